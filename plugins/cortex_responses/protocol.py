"""The Responses wire as this dialect reads and writes it: request, items, the response object and
its stream events.

Requests are decoded leniently: unknown fields are ignored (the API grows fast and clients send
what they know), and ``input`` items and ``tools`` are kept as raw objects here and decoded one by
one in :mod:`cortex_responses.translate`, so a bad item is reported by its path and an item type
this gateway does not know yet is skipped instead of rejected. Everything written is a Struct with
the field names of the ``openai`` SDK's types (``openai.types.responses``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]

# ---------------------------------------------------------------------------------------------
# Request


class ReasoningParam(msgspec.Struct, kw_only=True):
    effort: Effort | None = None
    summary: str | None = None
    generate_summary: str | None = None


class TextParam(msgspec.Struct, kw_only=True):
    format: dict[str, Any] | None = None
    verbosity: str | None = None


class ResponsesRequest(msgspec.Struct, kw_only=True):
    """``POST /v1/responses``; fields not listed here are accepted and ignored."""

    model: str
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: Annotated[int, Meta(ge=1)] | None = None
    reasoning: ReasoningParam | None = None
    text: TextParam | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    prompt_cache_key: str | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    stream: bool = False
    include: list[str] | None = None


# Input items (decoded one at a time; ``type`` may be missing on a message).


class MessageItem(msgspec.Struct, kw_only=True):
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[dict[str, Any]]


class FunctionCallItem(msgspec.Struct, kw_only=True):
    call_id: str
    name: str
    arguments: str
    namespace: str | None = None


class CustomToolCallItem(msgspec.Struct, kw_only=True):
    call_id: str
    name: str
    input: str
    namespace: str | None = None


class ToolOutputItem(msgspec.Struct, kw_only=True):
    """``function_call_output`` and ``custom_tool_call_output``."""

    call_id: str
    output: str | list[dict[str, Any]]


class TextOnly(msgspec.Struct, kw_only=True):
    text: str


class ReasoningInputItem(msgspec.Struct, kw_only=True):
    summary: list[TextOnly] = msgspec.field(default_factory=list)
    content: list[TextOnly] | None = None
    encrypted_content: str | None = None


class TextPartIn(msgspec.Struct, kw_only=True):
    """``input_text`` and ``output_text`` parts."""

    text: str


class RefusalPartIn(msgspec.Struct, kw_only=True):
    refusal: str


class ImagePartIn(msgspec.Struct, kw_only=True):
    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None


# Tools


class FunctionToolParam(msgspec.Struct, kw_only=True):
    name: str
    parameters: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class NamespaceToolParam(msgspec.Struct, kw_only=True):
    name: str
    tools: list[dict[str, Any]]
    description: str | None = None


class CustomToolParam(msgspec.Struct, kw_only=True):
    name: str
    description: str | None = None
    format: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------------------
# Output items


class OutputText(msgspec.Struct, tag="output_text", tag_field="type", kw_only=True):
    text: str
    annotations: list[Any] = msgspec.field(default_factory=list)
    logprobs: list[Any] = msgspec.field(default_factory=list)


class ReasoningText(msgspec.Struct, tag="reasoning_text", tag_field="type", kw_only=True):
    text: str


class SummaryText(msgspec.Struct, tag="summary_text", tag_field="type", kw_only=True):
    text: str


Status = Literal["in_progress", "completed", "incomplete"]


class OutputMessage(msgspec.Struct, tag="message", tag_field="type", kw_only=True):
    id: str
    status: Status
    content: list[OutputText]
    role: Literal["assistant"] = "assistant"


class ReasoningItem(msgspec.Struct, tag="reasoning", tag_field="type", kw_only=True):
    id: str
    summary: list[SummaryText]
    content: list[ReasoningText]
    status: Status


class FunctionCall(msgspec.Struct, tag="function_call", tag_field="type", kw_only=True, omit_defaults=True):
    id: str
    call_id: str
    name: str
    arguments: str
    status: Status
    namespace: str | UnsetType = UNSET


class CustomToolCall(
    msgspec.Struct, tag="custom_tool_call", tag_field="type", kw_only=True, omit_defaults=True
):
    id: str
    call_id: str
    name: str
    input: str
    status: Status
    namespace: str | UnsetType = UNSET


OutputItem = OutputMessage | ReasoningItem | FunctionCall | CustomToolCall
Part = OutputText | ReasoningText


# ---------------------------------------------------------------------------------------------
# The response object


class InputTokensDetails(msgspec.Struct, kw_only=True):
    cached_tokens: int = 0


class OutputTokensDetails(msgspec.Struct, kw_only=True):
    reasoning_tokens: int = 0


class Usage(msgspec.Struct, kw_only=True):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ResponseError(msgspec.Struct, kw_only=True):
    code: str
    message: str


class IncompleteDetails(msgspec.Struct, kw_only=True):
    reason: str


ResponseStatus = Literal["queued", "in_progress", "completed", "failed", "incomplete", "cancelled"]


class Response(msgspec.Struct, kw_only=True):
    """The response object (``openai.types.responses.Response``); request fields are echoed."""

    id: str
    created_at: int
    model: str
    status: ResponseStatus
    output: list[OutputItem]
    object: Literal["response"] = "response"
    usage: Usage | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] = msgspec.field(default_factory=list)
    tool_choice: str | dict[str, Any] = "auto"
    parallel_tool_calls: bool = True
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    previous_response_id: str | None = None
    reasoning: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    user: str | None = None
    prompt_cache_key: str | None = None
    store: bool = True
    background: bool = False
    truncation: str = "disabled"
    completed_at: int | None = None


class DeletedResponse(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["response.deleted"] = "response.deleted"
    deleted: bool = True


# ---------------------------------------------------------------------------------------------
# Stream events. ``sequence_number`` is set by the translator as each event is made.


class _Event(msgspec.Struct, tag_field="type", kw_only=True):
    sequence_number: int = 0


class _ItemEvent(_Event):
    """The events about one output item (the fields are encoded in this order, base class first)."""

    item_id: str
    output_index: int


class _PartEvent(_ItemEvent):
    """The events about one content part of one output item."""

    content_index: int


class _SummaryEvent(_ItemEvent):
    """The events about one summary part of one reasoning item."""

    summary_index: int


class ResponseCreated(_Event, tag="response.created"):
    response: Response


class ResponseInProgress(_Event, tag="response.in_progress"):
    response: Response


class ResponseCompleted(_Event, tag="response.completed"):
    response: Response


class ResponseIncomplete(_Event, tag="response.incomplete"):
    response: Response


class ResponseFailed(_Event, tag="response.failed"):
    response: Response


class OutputItemAdded(_Event, tag="response.output_item.added"):
    output_index: int
    item: OutputItem


class OutputItemDone(_Event, tag="response.output_item.done"):
    output_index: int
    item: OutputItem


class ContentPartAdded(_PartEvent, tag="response.content_part.added"):
    part: Part


class ContentPartDone(_PartEvent, tag="response.content_part.done"):
    part: Part


class OutputTextDelta(_PartEvent, tag="response.output_text.delta"):
    delta: str
    logprobs: list[Any] = msgspec.field(default_factory=list)


class OutputTextDone(_PartEvent, tag="response.output_text.done"):
    text: str
    logprobs: list[Any] = msgspec.field(default_factory=list)


class ReasoningTextDelta(_PartEvent, tag="response.reasoning_text.delta"):
    delta: str


class ReasoningTextDone(_PartEvent, tag="response.reasoning_text.done"):
    text: str


class SummaryPartAdded(_SummaryEvent, tag="response.reasoning_summary_part.added"):
    part: SummaryText


class SummaryPartDone(_SummaryEvent, tag="response.reasoning_summary_part.done"):
    part: SummaryText


class SummaryTextDelta(_SummaryEvent, tag="response.reasoning_summary_text.delta"):
    delta: str


class SummaryTextDone(_SummaryEvent, tag="response.reasoning_summary_text.done"):
    text: str


class ArgumentsDelta(_ItemEvent, tag="response.function_call_arguments.delta"):
    delta: str


class ArgumentsDone(_ItemEvent, tag="response.function_call_arguments.done"):
    name: str
    arguments: str


class CustomInputDelta(_ItemEvent, tag="response.custom_tool_call_input.delta"):
    delta: str


class CustomInputDone(_ItemEvent, tag="response.custom_tool_call_input.done"):
    input: str


StreamEvent = (
    ResponseCreated
    | ResponseInProgress
    | ResponseCompleted
    | ResponseIncomplete
    | ResponseFailed
    | OutputItemAdded
    | OutputItemDone
    | ContentPartAdded
    | ContentPartDone
    | OutputTextDelta
    | OutputTextDone
    | ReasoningTextDelta
    | ReasoningTextDone
    | SummaryPartAdded
    | SummaryPartDone
    | SummaryTextDelta
    | SummaryTextDone
    | ArgumentsDelta
    | ArgumentsDone
    | CustomInputDelta
    | CustomInputDone
)
