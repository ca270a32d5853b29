"""Splitting a model's raw output into visible text, reasoning and tool calls, as it streams.

Models trained on Qwen/Hermes-style templates write their thinking between ``<think>`` and
``</think>`` and each tool call as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``.
Clients expect those as separate channels (``reasoning`` and OpenAI ``tool_calls``), so the
harness feeds every decoded chunk through :class:`OutputParser`.

The parser's output never depends on how the text was chunked: a marker split across chunks is
held back until it is complete or proven not to be a marker, so no partial marker leaks into the
visible text. Tool calls are emitted whole, once their closing marker arrives (OpenAI allows the
full arguments in one fragment), because a half-written JSON object cannot be validated.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cortex_kernel.harness import Delta, ToolCallDelta

Mode = Literal["text", "reasoning", "tool"]


@dataclass(frozen=True)
class Markers:
    """The four strings that delimit reasoning and tool calls in a model's output."""

    think_start: str = "<think>"
    think_end: str = "</think>"
    tool_start: str = "<tool_call>"
    tool_end: str = "</tool_call>"


DEFAULT_MARKERS = Markers()


def new_tool_call_id() -> str:
    """An OpenAI-shaped tool call id; random, so ids never collide across a conversation."""
    return "call_" + secrets.token_hex(12)


def prompt_opens_reasoning(prompt: str, markers: Markers = DEFAULT_MARKERS) -> bool:
    """Whether the rendered prompt ends inside an open thinking block.

    Templates such as DeepSeek-R1's, or Qwen3's with ``enable_thinking``, end the generation
    prompt with ``<think>``; the model's output then starts as reasoning without an opening marker.
    """
    return prompt.rstrip().endswith(markers.think_start)


def _partial_suffix(buffer: str, candidates: list[str]) -> int:
    """Length of the longest tail of ``buffer`` that is a proper prefix of a candidate marker."""
    best = 0
    for marker in candidates:
        for size in range(min(len(marker) - 1, len(buffer)), best, -1):
            if buffer.endswith(marker[:size]):
                best = size
                break
    return best


class OutputParser:
    """Incremental splitter of raw model text into :class:`Delta` objects.

    :param reasoning: recognise ``<think>...</think>`` blocks.
    :param tools: recognise ``<tool_call>...</tool_call>`` blocks (only when the request has tools,
        so a model quoting the marker in prose is left alone otherwise).
    :param in_reasoning: the prompt already opened a thinking block (see
        :func:`prompt_opens_reasoning`).
    """

    def __init__(
        self,
        *,
        reasoning: bool = True,
        tools: bool = False,
        in_reasoning: bool = False,
        markers: Markers = DEFAULT_MARKERS,
        id_factory: Callable[[], str] = new_tool_call_id,
    ) -> None:
        self._markers = markers
        self._reasoning = reasoning
        self._tools = tools
        self._id_factory = id_factory
        self._mode: Mode = "reasoning" if (reasoning and in_reasoning) else "text"
        self._buffer = ""
        # Newlines right after <think> or </think> are template formatting, not content.
        self._strip_newlines = self._mode == "reasoning"
        # Whitespace between and after tool calls is held, then dropped unless text follows.
        self._held_whitespace = ""
        self._tool_calls = 0
        self._out: list[Delta] = []
        openers = []
        if reasoning:
            openers.append(markers.think_start)
        if tools:
            openers.append(markers.tool_start)
        self._openers = openers

    @property
    def tool_calls(self) -> int:
        """How many well-formed tool calls have been emitted so far."""
        return self._tool_calls

    def feed(self, chunk: str) -> list[Delta]:
        """Consume ``chunk`` and return the deltas it completes (possibly none)."""
        self._buffer += chunk
        while self._step():
            pass
        return self._drain()

    def finish(self) -> list[Delta]:
        """Flush whatever is held back; call once, after the last chunk."""
        rest, self._buffer = self._buffer, ""
        if self._mode == "text":
            self._emit_text(rest)
        elif self._mode == "reasoning":
            self._emit_reasoning(rest)
        else:  # an unterminated tool call (the output was cut short): keep it visible
            self._held_whitespace = ""
            self._emit_text(self._markers.tool_start + rest, final=True)
        return self._drain()

    # -- states ---------------------------------------------------------------------------------

    def _step(self) -> bool:
        """Advance over the buffer; True when a marker was consumed and the loop should go on."""
        buffer = self._buffer
        if self._mode == "text":
            found = -1
            marker = ""
            for candidate in self._openers:
                index = buffer.find(candidate)
                if index != -1 and (found == -1 or index < found):
                    found, marker = index, candidate
            if found == -1:
                keep = _partial_suffix(buffer, self._openers)
                self._emit_text(buffer[: len(buffer) - keep])
                self._buffer = buffer[len(buffer) - keep :]
                return False
            self._emit_text(buffer[:found])
            self._buffer = buffer[found + len(marker) :]
            if marker == self._markers.think_start:
                self._mode = "reasoning"
                self._strip_newlines = True
            else:
                self._mode = "tool"
                self._held_whitespace = ""
            return True
        if self._mode == "reasoning":
            end = self._markers.think_end
            index = buffer.find(end)
            if index == -1:
                keep = _partial_suffix(buffer, [end])
                self._emit_reasoning(buffer[: len(buffer) - keep])
                self._buffer = buffer[len(buffer) - keep :]
                return False
            self._emit_reasoning(buffer[:index])
            self._buffer = buffer[index + len(end) :]
            self._mode = "text"
            self._strip_newlines = True
            return True
        index = buffer.find(self._markers.tool_end)
        if index == -1:
            return False
        self._buffer = buffer[index + len(self._markers.tool_end) :]
        self._mode = "text"
        self._emit_tool_call(buffer[:index])
        return True

    # -- emitters -------------------------------------------------------------------------------

    def _strip(self, text: str) -> str:
        if self._strip_newlines and text:
            text = text.lstrip("\n")
            if text:
                self._strip_newlines = False
        return text

    def _emit_text(self, text: str, *, final: bool = False) -> None:
        text = self._strip(text)
        if not text:
            return
        if self._tool_calls and not final and not text.strip():
            self._held_whitespace += text
            return
        text, self._held_whitespace = self._held_whitespace + text, ""
        self._push("text", text)

    def _emit_reasoning(self, text: str) -> None:
        text = self._strip(text)
        if text:
            self._push("reasoning", text)

    def _emit_tool_call(self, body: str) -> None:
        call = _parse_tool_call(body)
        if call is None:  # not a call we can honour; show the model's text rather than lose it
            self._emit_text(self._markers.tool_start + body + self._markers.tool_end, final=True)
            return
        name, arguments = call
        self._held_whitespace = ""
        self._strip_newlines = False
        self._out.append(
            Delta(
                tool_calls=[
                    ToolCallDelta(
                        index=self._tool_calls, id=self._id_factory(), name=name, arguments=arguments
                    )
                ]
            )
        )
        self._tool_calls += 1

    def _push(self, kind: Literal["text", "reasoning"], text: str) -> None:
        last = self._out[-1] if self._out else None
        if last is not None and not last.tool_calls:
            if kind == "text" and last.text and not last.reasoning:
                last.text += text
                return
            if kind == "reasoning" and last.reasoning and not last.text:
                last.reasoning += text
                return
        self._out.append(Delta(text=text) if kind == "text" else Delta(reasoning=text))

    def _drain(self) -> list[Delta]:
        out, self._out = self._out, []
        return out


def _parse_tool_call(body: str) -> tuple[str, str] | None:
    """``(name, arguments-as-JSON)`` from a Hermes-style call body, or None when malformed."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
        return None
    arguments = payload.get("arguments", payload.get("parameters", {}))
    if isinstance(arguments, str):
        return payload["name"], arguments
    return payload["name"], json.dumps(arguments, ensure_ascii=False)
