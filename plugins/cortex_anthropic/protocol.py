"""Anthropic Messages API wire types, as msgspec Structs.

Inbound (requests): unknown fields are accepted, because Claude Code adds new ones often and a
400 on an unknown field would break every turn; the route logs their names at debug level.
Message content, ``system``, ``tools`` and tool-result content stay plain JSON here and are
decoded block by block in :mod:`cortex_anthropic.translate`, so that a block type this gateway
does not know yet is skipped rather than failing the whole request, and so that a malformed
block is reported with its position.

Outbound (responses, stream events, errors): tagged unions on ``type`` with the tag strings of
the API reference, so encoding writes the discriminator and the SSE ``event:`` name comes from
the same place as the JSON ``type``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

# ---------------------------------------------------------------------------------------------
# Request content blocks (decoded one at a time; see translate.py)


class TextBlock(msgspec.Struct, tag="text", tag_field="type", kw_only=True):
    text: str


class Base64ImageSource(msgspec.Struct, tag="base64", tag_field="type", kw_only=True):
    media_type: str
    data: str


class URLImageSource(msgspec.Struct, tag="url", tag_field="type", kw_only=True):
    url: str


class FileImageSource(msgspec.Struct, tag="file", tag_field="type", kw_only=True):
    file_id: str


ImageSource = Base64ImageSource | URLImageSource | FileImageSource


class ImageBlock(msgspec.Struct, tag="image", tag_field="type", kw_only=True):
    source: ImageSource


class DocumentSource(msgspec.Struct, kw_only=True):
    """One struct for every document source kind (``text``, ``content``, ``base64``, ``url``,
    ``file``): only the text kinds can reach a text-only model, the rest are refused by name."""

    type: str
    data: str | None = None
    media_type: str | None = None
    content: str | list[dict[str, Any]] | None = None
    url: str | None = None
    file_id: str | None = None


class DocumentBlock(msgspec.Struct, tag="document", tag_field="type", kw_only=True):
    source: DocumentSource
    title: str | None = None
    context: str | None = None


class SearchResultBlock(msgspec.Struct, tag="search_result", tag_field="type", kw_only=True):
    source: str
    title: str
    content: list[TextBlock]


class ThinkingBlock(msgspec.Struct, tag="thinking", tag_field="type", kw_only=True):
    thinking: str
    signature: str = ""


class RedactedThinkingBlock(msgspec.Struct, tag="redacted_thinking", tag_field="type", kw_only=True):
    data: str


class ToolUseBlock(msgspec.Struct, tag="tool_use", tag_field="type", kw_only=True):
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(msgspec.Struct, tag="tool_result", tag_field="type", kw_only=True):
    tool_use_id: str
    content: str | list[dict[str, Any]] = ""
    is_error: bool = False


class ToolReferenceBlock(msgspec.Struct, tag="tool_reference", tag_field="type", kw_only=True):
    tool_name: str


InputBlock = (
    TextBlock
    | ImageBlock
    | DocumentBlock
    | SearchResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock
    | ToolUseBlock
    | ToolResultBlock
)
ToolResultItem = TextBlock | ImageBlock | DocumentBlock | SearchResultBlock | ToolReferenceBlock

INPUT_BLOCK_TYPES = frozenset(
    {"text", "image", "document", "search_result", "thinking", "redacted_thinking", "tool_use", "tool_result"}
)
TOOL_RESULT_ITEM_TYPES = frozenset({"text", "image", "document", "search_result", "tool_reference"})


# ---------------------------------------------------------------------------------------------
# Requests


class MessageParam(msgspec.Struct, kw_only=True):
    role: Literal["user", "assistant", "system"]
    content: str | list[dict[str, Any]]


class Metadata(msgspec.Struct, kw_only=True):
    user_id: str | None = None


class ToolChoice(msgspec.Struct, kw_only=True):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class CustomTool(msgspec.Struct, kw_only=True):
    """A client tool. Server tools (a versioned ``type``) are dropped before this is decoded."""

    name: str
    input_schema: dict[str, Any]
    description: str | None = None
    strict: bool | None = None


class ThinkingConfig(msgspec.Struct, kw_only=True):
    """``type`` is a plain string: anything but ``disabled`` (``enabled``, ``adaptive``, newer
    kinds such as ``between_tools``) switches the model's reasoning on."""

    type: str
    budget_tokens: int | None = None
    display: str | None = None


class OutputFormat(msgspec.Struct, kw_only=True):
    type: str
    schema: dict[str, Any] | None = None


class OutputConfig(msgspec.Struct, kw_only=True):
    effort: str | None = None
    format: OutputFormat | None = None


class PromptParams(msgspec.Struct, kw_only=True):
    """The fields that shape the prompt, shared by ``/v1/messages`` and ``count_tokens``."""

    model: str
    messages: list[MessageParam]
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None
    output_config: OutputConfig | None = None


class CountTokensRequest(PromptParams, kw_only=True):
    """``POST /v1/messages/count_tokens``."""


class MessagesRequest(PromptParams, kw_only=True):
    """``POST /v1/messages``. ``max_tokens`` may be 0 (the API's cache pre-warm)."""

    max_tokens: Annotated[int, msgspec.Meta(ge=0)]
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stream: bool = False
    metadata: Metadata | None = None


# ---------------------------------------------------------------------------------------------
# Responses


class TextContent(msgspec.Struct, tag="text", tag_field="type", kw_only=True):
    text: str


class ThinkingContent(msgspec.Struct, tag="thinking", tag_field="type", kw_only=True):
    thinking: str
    signature: str


class ToolUseContent(msgspec.Struct, tag="tool_use", tag_field="type", kw_only=True):
    id: str
    name: str
    input: dict[str, Any]


ContentBlock = TextContent | ThinkingContent | ToolUseContent


class Usage(msgspec.Struct, kw_only=True):
    """Anthropic usage: ``input_tokens`` excludes the cached prompt tokens, which are counted in
    ``cache_read_input_tokens`` (total input = input + cache creation + cache read)."""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class Message(msgspec.Struct, tag="message", tag_field="type", kw_only=True):
    id: str
    model: str
    content: list[ContentBlock]
    stop_reason: str | None
    stop_sequence: str | None
    usage: Usage
    role: Literal["assistant"] = "assistant"


class CountTokensResponse(msgspec.Struct, kw_only=True):
    input_tokens: int


# ---------------------------------------------------------------------------------------------
# Stream events


class TextDelta(msgspec.Struct, tag="text_delta", tag_field="type", kw_only=True):
    text: str


class ThinkingDelta(msgspec.Struct, tag="thinking_delta", tag_field="type", kw_only=True):
    thinking: str


class InputJsonDelta(msgspec.Struct, tag="input_json_delta", tag_field="type", kw_only=True):
    partial_json: str


BlockDelta = TextDelta | ThinkingDelta | InputJsonDelta


class MessageStart(msgspec.Struct, tag="message_start", tag_field="type", kw_only=True):
    message: Message


class ContentBlockStart(msgspec.Struct, tag="content_block_start", tag_field="type", kw_only=True):
    index: int
    content_block: ContentBlock


class ContentBlockDelta(msgspec.Struct, tag="content_block_delta", tag_field="type", kw_only=True):
    index: int
    delta: BlockDelta


class ContentBlockStop(msgspec.Struct, tag="content_block_stop", tag_field="type", kw_only=True):
    index: int


class StopInfo(msgspec.Struct, kw_only=True):
    stop_reason: str
    stop_sequence: str | None


class DeltaUsage(msgspec.Struct, kw_only=True):
    """Cumulative totals at the end of the stream (the SDK overwrites, it does not add)."""

    output_tokens: int
    input_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class MessageDelta(msgspec.Struct, tag="message_delta", tag_field="type", kw_only=True):
    delta: StopInfo
    usage: DeltaUsage


class MessageStop(msgspec.Struct, tag="message_stop", tag_field="type", kw_only=True):
    pass


class Ping(msgspec.Struct, tag="ping", tag_field="type", kw_only=True):
    pass


class ErrorBody(msgspec.Struct, kw_only=True):
    type: str
    message: str


class ErrorEvent(msgspec.Struct, tag="error", tag_field="type", kw_only=True, omit_defaults=True):
    """Both the ``error`` stream event and the body of an HTTP error: the envelope is the same."""

    error: ErrorBody
    request_id: str | None = None


StreamEvent = (
    MessageStart
    | ContentBlockStart
    | ContentBlockDelta
    | ContentBlockStop
    | MessageDelta
    | MessageStop
    | Ping
    | ErrorEvent
)


def event_name(event: StreamEvent) -> str:
    """The SSE ``event:`` name of ``event``, which is also its JSON ``type``."""
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


# ---------------------------------------------------------------------------------------------
# Models


class ModelInfo(msgspec.Struct, tag="model", tag_field="type", kw_only=True):
    id: str
    display_name: str
    created_at: str
    max_input_tokens: int | None = None
    max_tokens: int | None = None


class ModelList(msgspec.Struct, kw_only=True):
    data: list[ModelInfo]
    has_more: bool
    first_id: str | None
    last_id: str | None
