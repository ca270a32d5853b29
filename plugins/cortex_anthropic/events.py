"""The state machine from OpenAI chat chunks to Anthropic stream events.

It is pure (no I/O), so the same object serves streamed and non-streamed replies (the latter
fold the events into one :class:`~cortex_anthropic.protocol.Message`), and property tests can
drive it with arbitrary chunkings.

Rules, from the API and from what clients do with the events:

* ``message_start`` comes first, before anything else, even when the first output is a tool call.
* Blocks never interleave: a new kind of output (thinking, text, a tool call) closes the open
  block first. Block indexes count up from 0 in the order blocks open, which is their position
  in the final ``content``.
* A tool call's block opens once its name is known (its id too, or a ``toolu_`` id is made up);
  argument fragments that arrive before that are buffered and sent right after the start.
  Upstreams send each call's fragments contiguously (OpenAI, vLLM and our neuron all do); a
  fragment for a call whose block was already closed cannot be placed and fails the stream with
  an error event rather than silently corrupting that call's input.
* ``stop_reason``: a matched stop sequence → ``stop_sequence``; ``length`` → ``max_tokens``, or
  ``model_context_window_exceeded`` when the output budget had been cut to what the context
  left (the API's own answer when input plus ``max_tokens`` overshoot the window); any tool call
  → ``tool_use``; ``content_filter`` → ``refusal``; otherwise ``end_turn``. A stream that ends
  without a finish reason, or with ``error``, is an error, not a quiet ``end_turn``.
* Usage: ``input_tokens`` excludes the cached prompt tokens, reported in
  ``cache_read_input_tokens``; ``output_tokens`` is at least 1. When the dialect itself cut the
  stream at a stop sequence there is no usage chunk: the input is the count taken before the
  request, and the output is estimated as the number of content chunks received.

Stop sequences are matched here, in the gateway, not by the neuron: a neuron given OpenAI
``stop`` strings truncates the text and answers ``finish_reason: "stop"`` exactly as for a
natural end of turn, so Anthropic's ``stop_reason: "stop_sequence"`` and the matched sequence
could not be told apart afterwards. On a match the dialect closes the neuron's stream, which
stops generation there. Stop sequences apply to visible text only.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal

from cortex_anthropic.chat_protocol import ChatChunk, ChatUsage, ToolCallFragment
from cortex_anthropic.protocol import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    DeltaUsage,
    InputJsonDelta,
    Message,
    MessageDelta,
    MessageStart,
    MessageStop,
    StopInfo,
    StreamEvent,
    TextContent,
    TextDelta,
    ThinkingContent,
    ThinkingDelta,
    ToolUseContent,
    Usage,
)
from cortex_anthropic.tool_calls import ToolCallParts
from cortex_kernel.errors import UpstreamError
from cortex_kernel.stop_sequences import StopMatcher

BlockKind = Literal["text", "thinking", "tool_use"]


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def new_tool_use_id() -> str:
    return "toolu_" + secrets.token_hex(12)


@dataclass
class _Call(ToolCallParts):
    """One upstream tool call: what is known of it, and where its block is."""

    block: int | None = None


class EventTranslator:
    """Feeds on :class:`ChatChunk` objects and produces Anthropic :data:`StreamEvent` objects.

    :param model: the model id put in the message.
    :param stops: the request's ``stop_sequences`` (matched here, not upstream).
    :param show_reasoning: turn reasoning into thinking blocks (off for ``display: "omitted"``).
    """

    def __init__(
        self,
        model: str,
        *,
        stops: tuple[str, ...] = (),
        show_reasoning: bool = True,
        message_id: str | None = None,
    ) -> None:
        self.model = model
        self.message_id = message_id or new_message_id()
        self._scanner = StopMatcher(stops)
        self._show_reasoning = show_reasoning
        self._blocks = 0
        self._open: BlockKind | None = None
        self._open_call: int | None = None
        self._calls: dict[int, _Call] = {}
        self._finish: str | None = None
        self._usage: ChatUsage | None = None
        self._content_chunks = 0
        self.input_tokens: int | None = None
        self.clamped = False

    @property
    def stopped(self) -> bool:
        """A stop sequence matched: nothing more will be emitted, and the upstream can go."""
        return self._scanner.matched is not None

    def start(self, input_tokens: int | None = None) -> MessageStart:
        """The first event. ``input_tokens`` is the prompt count, when it is known this early."""
        if input_tokens is not None:
            self.input_tokens = input_tokens
        usage = Usage(input_tokens=input_tokens or 0, output_tokens=1)
        message = Message(
            id=self.message_id,
            model=self.model,
            content=[],
            stop_reason=None,
            stop_sequence=None,
            usage=usage,
        )
        return MessageStart(message=message)

    # -- chunks ---------------------------------------------------------------------------------

    def feed(self, chunk: ChatChunk) -> list[StreamEvent]:
        """The events one upstream chunk produces (often none, or one delta)."""
        events: list[StreamEvent] = []
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices[:1]:
            if self.stopped:
                break
            delta = choice.delta
            reasoning = delta.reasoning_content or delta.reasoning
            if reasoning or delta.content or delta.tool_calls:
                self._content_chunks += 1
            if reasoning and self._show_reasoning:
                self._ensure(events, "thinking")
                events.append(
                    ContentBlockDelta(index=self._blocks - 1, delta=ThinkingDelta(thinking=reasoning))
                )
            if delta.content:
                self._text(events, self._scanner.push(delta.content))
            for fragment in delta.tool_calls or []:
                self._tool_fragment(events, fragment)
            if choice.finish_reason is not None:
                self._finish = choice.finish_reason
        return events

    def _text(self, events: list[StreamEvent], text: str) -> None:
        if text:
            self._ensure(events, "text")
            events.append(ContentBlockDelta(index=self._blocks - 1, delta=TextDelta(text=text)))

    def _release_text(self, events: list[StreamEvent]) -> None:
        """Send the text held back as a possible start of a stop sequence: a visible-text segment
        ends where reasoning or a tool call begins, and stop sequences do not span those."""
        self._text(events, self._scanner.flush())

    def _ensure(self, events: list[StreamEvent], kind: Literal["text", "thinking"]) -> None:
        if kind != "text":
            # Before the open-block check: text held back while a thinking block stayed open
            # (none of it was sent yet) still comes before this reasoning, in its own block.
            self._release_text(events)
        if self._open == kind:
            return
        self._close(events)
        block: TextContent | ThinkingContent = (
            TextContent(text="") if kind == "text" else ThinkingContent(thinking="", signature="")
        )
        events.append(ContentBlockStart(index=self._blocks, content_block=block))
        self._blocks += 1
        self._open = kind

    def _close(self, events: list[StreamEvent]) -> None:
        if self._open is not None:
            events.append(ContentBlockStop(index=self._blocks - 1))
            self._open = None
            self._open_call = None

    def _tool_fragment(self, events: list[StreamEvent], fragment: ToolCallFragment) -> None:
        if self.stopped:  # a stop sequence in this chunk's text ended the reply
            return
        call = self._calls.setdefault(fragment.index, _Call())
        arguments = call.absorb(fragment)
        if call.block is None:
            if call.hold(arguments):
                self._open_tool(events, fragment.index, call)
            return
        if self._open_call != fragment.index:
            if arguments:
                raise UpstreamError(
                    f"the model server interleaved the arguments of parallel tool calls "
                    f"(call {fragment.index} resumed after its block closed)",
                    code="upstream_protocol_error",
                )
            return
        if arguments:
            events.append(ContentBlockDelta(index=call.block, delta=InputJsonDelta(partial_json=arguments)))

    def _open_tool(self, events: list[StreamEvent], index: int, call: _Call) -> None:
        self._release_text(events)
        self._close(events)
        assert call.name is not None
        call.id = call.id or new_tool_use_id()
        call.block = self._blocks
        self._blocks += 1
        self._open = "tool_use"
        self._open_call = index
        events.append(
            ContentBlockStart(
                index=call.block, content_block=ToolUseContent(id=call.id, name=call.name, input={})
            )
        )
        for arguments in call.pending:
            events.append(ContentBlockDelta(index=call.block, delta=InputJsonDelta(partial_json=arguments)))
        call.pending.clear()

    # -- the end ----------------------------------------------------------------------------------

    def finish(self) -> list[StreamEvent]:
        """Close the open block and send ``message_delta`` and ``message_stop``.

        Raises :class:`UpstreamError` when the upstream ended without saying why (a truncated
        stream must not look like a complete answer).
        """
        events: list[StreamEvent] = []
        if not self.stopped:
            self._text(events, self._scanner.flush())
        if self._finish is None and not self.stopped:
            raise UpstreamError("the model server's stream ended before the reply finished")
        if self._finish == "error" and not self.stopped:
            raise UpstreamError("the model server reported that generation failed")
        for index, call in sorted(self._calls.items()):
            if call.block is None:
                raise UpstreamError(
                    f"the model server sent tool call {index} without a name", code="upstream_protocol_error"
                )
        self._close(events)
        events.append(MessageDelta(delta=self._stop_info(), usage=self._final_usage()))
        events.append(MessageStop())
        return events

    def _stop_info(self) -> StopInfo:
        matched = self._scanner.matched
        if matched is not None:
            return StopInfo(stop_reason="stop_sequence", stop_sequence=matched)
        if self._finish == "length":
            reason = "model_context_window_exceeded" if self.clamped else "max_tokens"
        elif self._calls or self._finish == "tool_calls":
            reason = "tool_use"
        elif self._finish == "content_filter":
            reason = "refusal"
        else:
            reason = "end_turn"
        return StopInfo(stop_reason=reason, stop_sequence=None)

    def _final_usage(self) -> DeltaUsage:
        usage = self._usage
        if usage is None:
            return DeltaUsage(input_tokens=self.input_tokens or 0, output_tokens=max(1, self._content_chunks))
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        return DeltaUsage(
            input_tokens=usage.prompt_tokens - cached,
            output_tokens=max(1, usage.completion_tokens),
            cache_read_input_tokens=cached,
        )
