"""OpenAI chat stream chunks → Responses stream events, and the response they add up to.

Each upstream segment becomes one output item, in the order it began: reasoning deltas a
``reasoning`` item (one ``reasoning_text`` part), content deltas a ``message`` item (one
``output_text`` part), each tool call a ``function_call`` item — or a ``custom_tool_call`` when
the name is a custom tool's, whose ``input`` is unwrapped from the ``{"input": ...}`` arguments
once the call is complete (so its input arrives as one delta). Names flattened for the model are
restored (see :mod:`cortex_responses.tools`). Every item gets ``output_item.added`` and
``output_item.done``; every event gets the next ``sequence_number``.

The reply is ``incomplete`` (reason ``max_output_tokens``) when the neuron stopped at its token
limit, else ``completed``. Usage comes from the neuron's usage chunk; ``reasoning_tokens`` is the
number of reasoning deltas (each is one token on a neuron), as the chat wire does not report it.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from cortex_anthropic.chat_protocol import ChatChunk, ChatUsage, ToolCallFragment
from cortex_anthropic.tool_calls import ToolCallParts
from cortex_kernel.errors import CortexError, UpstreamError
from cortex_responses.errors import failure_code, failure_message
from cortex_responses.protocol import (
    ArgumentsDelta,
    ArgumentsDone,
    ContentPartAdded,
    ContentPartDone,
    CustomInputDelta,
    CustomInputDone,
    CustomToolCall,
    FunctionCall,
    IncompleteDetails,
    InputTokensDetails,
    OutputItem,
    OutputItemAdded,
    OutputItemDone,
    OutputMessage,
    OutputText,
    OutputTextDelta,
    OutputTextDone,
    OutputTokensDetails,
    ReasoningItem,
    ReasoningText,
    ReasoningTextDelta,
    ReasoningTextDone,
    Response,
    ResponseCompleted,
    ResponseCreated,
    ResponseError,
    ResponseFailed,
    ResponseIncomplete,
    ResponseInProgress,
    StreamEvent,
    SummaryPartAdded,
    SummaryPartDone,
    SummaryText,
    SummaryTextDelta,
    SummaryTextDone,
    Usage,
)
from cortex_responses.tools import CUSTOM_ARGUMENT, ToolNames


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


@dataclass
class _Segment:
    """The open reasoning or message item."""

    kind: Literal["reasoning", "message"]
    item_id: str
    output_index: int
    text: list[str] = field(default_factory=list)


@dataclass
class _Call(ToolCallParts):
    """One upstream tool call: what is known of it, and where its item is."""

    arguments: list[str] = field(default_factory=list)
    item_id: str = ""
    output_index: int | None = None


class EventTranslator:
    """Feeds on :class:`ChatChunk` objects and produces Responses :data:`StreamEvent` objects.

    :param response: the response as it starts (``in_progress``, no output, request fields echoed);
        it is updated in place and is the final response once :meth:`finish` has run.
    :param names: the tool-name map of the request.
    :param summarize: the client asked for a reasoning summary (``reasoning.summary``): reasoning
        streams as summary parts (``response.reasoning_summary_*``), which is what such clients
        display; a local model's summary is its whole reasoning. The item carries it both ways.
    """

    def __init__(self, response: Response, names: ToolNames, *, summarize: bool = False) -> None:
        self.response = response
        self._summarize = summarize
        self._names = names
        self._sequence = 0
        self._items: dict[int, OutputItem] = {}
        self._next_index = 0
        self._segment: _Segment | None = None
        self._calls: dict[int, _Call] = {}
        self._finish: str | None = None
        self._usage: ChatUsage | None = None
        self._reasoning_chunks = 0
        self._content_chunks = 0
        self.input_tokens: int | None = None

    def _seq(self, event: StreamEvent) -> StreamEvent:
        event.sequence_number = self._sequence
        self._sequence += 1
        return event

    def _snapshot(self) -> Response:
        output = [self._items[index] for index in sorted(self._items)]
        return msgspec.structs.replace(self.response, output=output)

    def start(self) -> list[StreamEvent]:
        """``response.created`` and ``response.in_progress``."""
        return [
            self._seq(ResponseCreated(response=self._snapshot())),
            self._seq(ResponseInProgress(response=self._snapshot())),
        ]

    # -- chunks ---------------------------------------------------------------------------------

    def feed(self, chunk: ChatChunk) -> list[StreamEvent]:
        """The events one upstream chunk produces (often none, or one delta)."""
        events: list[StreamEvent] = []
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices[:1]:
            delta = choice.delta
            reasoning = delta.reasoning_content or delta.reasoning
            if reasoning:
                self._reasoning_chunks += 1
                self._segment_delta(events, "reasoning", reasoning)
            if delta.content:
                self._content_chunks += 1
                self._segment_delta(events, "message", delta.content)
            for fragment in delta.tool_calls or []:
                self._content_chunks += 1
                self._tool_fragment(events, fragment)
            if choice.finish_reason is not None:
                self._finish = choice.finish_reason
        return events

    def _take_index(self) -> int:
        index, self._next_index = self._next_index, self._next_index + 1
        return index

    def _segment_delta(
        self, events: list[StreamEvent], kind: Literal["reasoning", "message"], text: str
    ) -> None:
        segment = self._segment
        if segment is None or segment.kind != kind:
            segment = self._open_segment(events, kind)
        segment.text.append(text)
        item_id, index = segment.item_id, segment.output_index
        if kind == "message":
            events.append(
                self._seq(OutputTextDelta(delta=text, item_id=item_id, output_index=index, content_index=0))
            )
        elif self._summarize:
            events.append(
                self._seq(SummaryTextDelta(delta=text, item_id=item_id, output_index=index, summary_index=0))
            )
        else:
            events.append(
                self._seq(
                    ReasoningTextDelta(delta=text, item_id=item_id, output_index=index, content_index=0)
                )
            )

    def _open_segment(self, events: list[StreamEvent], kind: Literal["reasoning", "message"]) -> _Segment:
        self._close_segment(events)
        item_id = new_id("rs" if kind == "reasoning" else "msg")
        segment = self._segment = _Segment(kind=kind, item_id=item_id, output_index=self._take_index())
        index = segment.output_index
        item: OutputItem
        if kind == "reasoning":
            item = ReasoningItem(id=item_id, summary=[], content=[], status="in_progress")
        else:
            item = OutputMessage(id=item_id, status="in_progress", content=[])
        events.append(self._seq(OutputItemAdded(output_index=index, item=item)))
        if kind == "message":
            part = OutputText(text="")
            events.append(
                self._seq(ContentPartAdded(item_id=item_id, output_index=index, content_index=0, part=part))
            )
        elif self._summarize:
            summary = SummaryText(text="")
            events.append(
                self._seq(
                    SummaryPartAdded(item_id=item_id, output_index=index, summary_index=0, part=summary)
                )
            )
        else:
            reasoning = ReasoningText(text="")
            events.append(
                self._seq(
                    ContentPartAdded(item_id=item_id, output_index=index, content_index=0, part=reasoning)
                )
            )
        return segment

    def _close_segment(self, events: list[StreamEvent]) -> None:
        segment, self._segment = self._segment, None
        if segment is None:
            return
        text = "".join(segment.text)
        item_id, index = segment.item_id, segment.output_index
        item: OutputItem
        if segment.kind == "message":
            output = OutputText(text=text)
            events.append(
                self._seq(OutputTextDone(text=text, item_id=item_id, output_index=index, content_index=0))
            )
            events.append(
                self._seq(ContentPartDone(part=output, item_id=item_id, output_index=index, content_index=0))
            )
            item = OutputMessage(id=item_id, status="completed", content=[output])
        else:
            reasoning = ReasoningText(text=text)
            summary: list[SummaryText] = []
            if self._summarize:
                summary = [SummaryText(text=text)]
                events.append(
                    self._seq(
                        SummaryTextDone(text=text, item_id=item_id, output_index=index, summary_index=0)
                    )
                )
                events.append(
                    self._seq(
                        SummaryPartDone(part=summary[0], item_id=item_id, output_index=index, summary_index=0)
                    )
                )
            else:
                events.append(
                    self._seq(
                        ReasoningTextDone(text=text, item_id=item_id, output_index=index, content_index=0)
                    )
                )
                events.append(
                    self._seq(
                        ContentPartDone(part=reasoning, item_id=item_id, output_index=index, content_index=0)
                    )
                )
            item = ReasoningItem(id=item_id, summary=summary, content=[reasoning], status="completed")
        self._items[index] = item
        events.append(self._seq(OutputItemDone(output_index=index, item=item)))

    def _tool_fragment(self, events: list[StreamEvent], fragment: ToolCallFragment) -> None:
        call = self._calls.setdefault(fragment.index, _Call())
        arguments = call.absorb(fragment)
        if call.output_index is None:
            if call.hold(arguments):
                self._open_call(events, call)
            return
        if arguments:
            self._arguments(events, call, arguments)

    def _open_call(self, events: list[StreamEvent], call: _Call) -> None:
        self._close_segment(events)
        assert call.name is not None
        origin = self._names.origin(call.name)
        call.id = call.id or new_id("call")
        call.output_index = self._take_index()
        item: OutputItem
        if origin.custom:
            call.item_id = new_id("ctc")
            item = CustomToolCall(
                id=call.item_id, call_id=call.id, name=origin.name, input="", status="in_progress"
            )
        else:
            call.item_id = new_id("fc")
            item = FunctionCall(
                id=call.item_id, call_id=call.id, name=origin.name, arguments="", status="in_progress"
            )
        if origin.namespace is not None:
            item.namespace = origin.namespace
        events.append(self._seq(OutputItemAdded(output_index=call.output_index, item=item)))
        pending, call.pending = call.pending, []
        for arguments in pending:
            self._arguments(events, call, arguments)

    def _arguments(self, events: list[StreamEvent], call: _Call, arguments: str) -> None:
        call.arguments.append(arguments)
        assert call.name is not None and call.output_index is not None
        if not self._names.origin(call.name).custom:  # a custom call's input is unwrapped at the end
            events.append(
                self._seq(
                    ArgumentsDelta(item_id=call.item_id, output_index=call.output_index, delta=arguments)
                )
            )

    def _close_call(self, events: list[StreamEvent], call: _Call) -> None:
        assert call.name is not None and call.output_index is not None and call.id is not None
        origin = self._names.origin(call.name)
        arguments = "".join(call.arguments)
        item_id, index = call.item_id, call.output_index
        item: OutputItem
        if origin.custom:
            text = custom_input(arguments)
            if text:
                events.append(self._seq(CustomInputDelta(delta=text, item_id=item_id, output_index=index)))
            events.append(self._seq(CustomInputDone(input=text, item_id=item_id, output_index=index)))
            item = CustomToolCall(
                id=call.item_id, call_id=call.id, name=origin.name, input=text, status="completed"
            )
        else:
            events.append(
                self._seq(
                    ArgumentsDone(name=origin.name, arguments=arguments, item_id=item_id, output_index=index)
                )
            )
            item = FunctionCall(
                id=call.item_id,
                call_id=call.id,
                name=origin.name,
                arguments=arguments,
                status="completed",
            )
        if origin.namespace is not None:
            item.namespace = origin.namespace
        self._items[call.output_index] = item
        events.append(self._seq(OutputItemDone(output_index=call.output_index, item=item)))

    # -- the end ----------------------------------------------------------------------------------

    def finish(self) -> list[StreamEvent]:
        """Close every item and send ``response.completed`` (or ``response.incomplete``).

        Raises :class:`UpstreamError` when the upstream ended without saying why (a truncated
        stream must not look like a complete answer).
        """
        if self._finish is None:
            raise UpstreamError("the model server's stream ended before the reply finished")
        if self._finish == "error":
            raise UpstreamError("the model server reported that generation failed")
        for index, call in sorted(self._calls.items()):
            if call.output_index is None:
                raise UpstreamError(
                    f"the model server sent tool call {index} without a name", code="upstream_protocol_error"
                )
        events: list[StreamEvent] = []
        self._close_segment(events)
        for _, call in sorted(self._calls.items()):
            self._close_call(events, call)
        response = self.response
        response.output = [self._items[index] for index in sorted(self._items)]
        response.usage = self._final_usage()
        response.completed_at = int(time.time())
        if self._finish == "length":
            response.status = "incomplete"
            response.incomplete_details = IncompleteDetails(reason="max_output_tokens")
            events.append(self._seq(ResponseIncomplete(response=response)))
        else:
            response.status = "completed"
            events.append(self._seq(ResponseCompleted(response=response)))
        return events

    def failed(self, error: CortexError) -> ResponseFailed:
        """``response.failed`` for an error after the stream began (the items done so far kept)."""
        response = self._snapshot()
        response.status = "failed"
        response.error = ResponseError(code=failure_code(error), message=failure_message(error))
        return ResponseFailed(sequence_number=self._next_sequence(), response=response)

    def _next_sequence(self) -> int:
        number, self._sequence = self._sequence, self._sequence + 1
        return number

    def _final_usage(self) -> Usage:
        usage = self._usage
        if usage is None:
            prompt, output, cached = self.input_tokens or 0, self._content_chunks + self._reasoning_chunks, 0
        else:
            prompt, output = usage.prompt_tokens, usage.completion_tokens
            cached = min(usage.cached_tokens, prompt)
        return Usage(
            input_tokens=prompt,
            input_tokens_details=InputTokensDetails(cached_tokens=cached),
            output_tokens=output,
            output_tokens_details=OutputTokensDetails(reasoning_tokens=min(self._reasoning_chunks, output)),
            total_tokens=prompt + output,
        )


def custom_input(arguments: str) -> str:
    """A custom tool's free text from the model's ``{"input": ...}`` arguments (the raw arguments
    when the model did not follow that shape: a local model sometimes writes the text bare)."""
    try:
        decoded = json.loads(arguments)
    except ValueError:
        return arguments
    if isinstance(decoded, dict) and isinstance(decoded.get(CUSTOM_ARGUMENT), str):
        return str(decoded[CUSTOM_ARGUMENT])
    if isinstance(decoded, str):
        return decoded
    return arguments
