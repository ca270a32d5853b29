"""Folding stream events into one :class:`~cortex_anthropic.protocol.Message`.

A non-streamed ``/v1/messages`` is served from the very same upstream stream and event
translator as a streamed one, then folded here. One path means the two modes cannot disagree
about content, stop reasons or usage, and stop sequences cut generation short in both.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from cortex_anthropic.protocol import (
    ContentBlock,
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    InputJsonDelta,
    Message,
    MessageDelta,
    MessageStart,
    StreamEvent,
    TextContent,
    TextDelta,
    ThinkingContent,
    ThinkingDelta,
    ToolUseContent,
    Usage,
)

log = logging.getLogger(__name__)
_input_decoder = msgspec.json.Decoder(dict[str, Any])


def tool_input(partial_json: str) -> dict[str, Any]:
    """A tool call's input from its argument text; ``{}`` when empty.

    Anthropic requires an object. Text that is not a JSON object (a model can write anything) is
    kept under ``"_raw"`` rather than lost, so the client sees what the model produced.
    """
    if not partial_json.strip():
        return {}
    try:
        return _input_decoder.decode(partial_json)
    except (msgspec.DecodeError, RecursionError):
        log.warning("a tool call's arguments are not a JSON object: %.200r", partial_json)
        return {"_raw": partial_json}


class MessageBuilder:
    """Applies events in order; :attr:`message` is the result after ``message_delta``."""

    def __init__(self) -> None:
        self._message: Message | None = None
        self._blocks: list[ContentBlock] = []
        self._arguments: dict[int, list[str]] = {}

    def apply(self, event: StreamEvent) -> None:
        if isinstance(event, MessageStart):
            self._message = event.message
        elif isinstance(event, ContentBlockStart):
            self._blocks.append(msgspec.structs.replace(event.content_block))
        elif isinstance(event, ContentBlockDelta):
            self._delta(event)
        elif isinstance(event, ContentBlockStop):
            block = self._blocks[event.index]
            if isinstance(block, ToolUseContent) and event.index in self._arguments:
                block.input = tool_input("".join(self._arguments.pop(event.index)))
        elif isinstance(event, MessageDelta):
            assert self._message is not None
            usage = event.usage
            self._message = msgspec.structs.replace(
                self._message,
                content=self._blocks,
                stop_reason=event.delta.stop_reason,
                stop_sequence=event.delta.stop_sequence,
                usage=Usage(
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cache_creation_input_tokens=usage.cache_creation_input_tokens,
                    cache_read_input_tokens=usage.cache_read_input_tokens,
                ),
            )

    def _delta(self, event: ContentBlockDelta) -> None:
        block = self._blocks[event.index]
        delta = event.delta
        if isinstance(delta, TextDelta) and isinstance(block, TextContent):
            block.text += delta.text
        elif isinstance(delta, ThinkingDelta) and isinstance(block, ThinkingContent):
            block.thinking += delta.thinking
        elif isinstance(delta, InputJsonDelta):
            self._arguments.setdefault(event.index, []).append(delta.partial_json)

    @property
    def message(self) -> Message:
        assert self._message is not None and self._message.stop_reason is not None
        return self._message
