"""The OpenAI chat wire as this dialect speaks it to neurons: the request it sends, the stream
chunks and error envelopes it reads back.

Requests are Structs with ``UNSET`` defaults and ``omit_defaults``, so a field the client did not
set is left out and the model's own defaults apply on the neuron. Messages are tagged on ``role``
and content parts on ``type``, the two discriminators of OpenAI chat. Replies are decoded
leniently (every field optional, unknown fields ignored): a neuron on a newer version may add
fields, and vLLM-backed neurons name reasoning ``reasoning`` where ours says
``reasoning_content``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

# ---------------------------------------------------------------------------------------------
# Request


class TextPart(msgspec.Struct, tag="text", tag_field="type", kw_only=True):
    text: str


class ImageURL(msgspec.Struct, kw_only=True):
    url: str


class ImagePart(msgspec.Struct, tag="image_url", tag_field="type", kw_only=True):
    image_url: ImageURL


ContentPart = TextPart | ImagePart


class FunctionCall(msgspec.Struct, kw_only=True):
    name: str
    arguments: str


class ToolCall(msgspec.Struct, tag="function", tag_field="type", kw_only=True):
    id: str
    function: FunctionCall


class SystemMessage(msgspec.Struct, tag="system", tag_field="role", kw_only=True):
    content: str


class UserMessage(msgspec.Struct, tag="user", tag_field="role", kw_only=True):
    content: str | list[ContentPart]


class AssistantMessage(msgspec.Struct, tag="assistant", tag_field="role", kw_only=True, omit_defaults=True):
    content: str
    reasoning_content: str | UnsetType = UNSET
    tool_calls: list[ToolCall] | UnsetType = UNSET


class ToolMessage(msgspec.Struct, tag="tool", tag_field="role", kw_only=True):
    tool_call_id: str
    content: str


ChatMessage = SystemMessage | UserMessage | AssistantMessage | ToolMessage


class FunctionDef(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    parameters: dict[str, Any]
    description: str | UnsetType = UNSET
    strict: bool | UnsetType = UNSET


class FunctionTool(msgspec.Struct, tag="function", tag_field="type", kw_only=True):
    function: FunctionDef


class NamedFunction(msgspec.Struct, kw_only=True):
    name: str


class NamedToolChoice(msgspec.Struct, tag="function", tag_field="type", kw_only=True):
    function: NamedFunction


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = True


class ChatCompletionRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the dialect POSTs to a neuron's ``/v1/chat/completions`` (and ``/v1/count_tokens``)."""

    model: str
    messages: list[ChatMessage]
    stream: bool = False
    stream_options: StreamOptions | UnsetType = UNSET
    max_completion_tokens: int | UnsetType = UNSET
    temperature: float | UnsetType = UNSET
    top_p: float | UnsetType = UNSET
    top_k: int | UnsetType = UNSET
    stop: list[str] | UnsetType = UNSET
    tools: list[FunctionTool] | UnsetType = UNSET
    tool_choice: str | NamedToolChoice | UnsetType = UNSET
    parallel_tool_calls: bool | UnsetType = UNSET
    chat_template_kwargs: dict[str, Any] | UnsetType = UNSET
    reasoning_effort: str | UnsetType = UNSET
    response_format: dict[str, Any] | UnsetType = UNSET
    user: str | UnsetType = UNSET


# ---------------------------------------------------------------------------------------------
# Replies


class FunctionFragment(msgspec.Struct, kw_only=True):
    name: str | None = None
    arguments: str | None = None


class ToolCallFragment(msgspec.Struct, kw_only=True):
    index: int = 0
    id: str | None = None
    function: FunctionFragment | None = None


class ChunkDelta(msgspec.Struct, kw_only=True):
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCallFragment] | None = None


class ChunkChoice(msgspec.Struct, kw_only=True):
    index: int = 0
    delta: ChunkDelta = msgspec.field(default_factory=ChunkDelta)
    finish_reason: str | None = None


class PromptTokensDetails(msgspec.Struct, kw_only=True):
    cached_tokens: int | None = None


class ChatUsage(msgspec.Struct, kw_only=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None

    @property
    def cached_tokens(self) -> int:
        details = self.prompt_tokens_details
        return (details.cached_tokens or 0) if details is not None else 0


class OpenAIError(msgspec.Struct, kw_only=True):
    """The neuron's error; ``prompt_tokens`` and ``context_length`` come with an over-long prompt."""

    message: str = ""
    type: str | None = None
    code: str | None = None
    param: str | None = None
    prompt_tokens: int | None = None
    context_length: int | None = None


class ChatChunk(msgspec.Struct, kw_only=True):
    """One SSE ``data:`` payload: a chunk, the usage chunk (``choices: []``), or an error frame
    (the neuron reports a failure after its 200 headers as ``{"error": {...}}``)."""

    choices: list[ChunkChoice] = msgspec.field(default_factory=list)
    usage: ChatUsage | None = None
    error: OpenAIError | None = None


class OpenAIErrorEnvelope(msgspec.Struct, kw_only=True):
    error: OpenAIError


class TokenCount(msgspec.Struct, kw_only=True):
    """The neuron's ``POST /v1/count_tokens`` answer."""

    prompt_tokens: int
    context_length: int | None = None
