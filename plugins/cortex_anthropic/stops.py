"""Matching ``stop_sequences`` in the gateway, so the reply can say which one matched.

Anthropic reports ``stop_reason: "stop_sequence"`` together with the sequence that matched. A
neuron given OpenAI ``stop`` strings truncates the text and answers ``finish_reason: "stop"``,
exactly as it does for a natural end of turn, so the two cannot be told apart afterwards. The
dialect therefore keeps the stop strings to itself and scans the visible text as it streams:
text that could be the start of a stop string is held back until it is proven not to be one, so
a client never sees part of a sequence that is then cut off. On a match the dialect closes the
neuron's stream, which stops generation there (the neuron treats it as a client that left).

Stop sequences apply to visible text only, not to reasoning or tool-call arguments.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopScanner:
    """Finds the first stop string in streamed text and withholds anything that may start one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [stop for stop in stops if stop]
        self._pending = ""
        self.matched: str | None = None

    def push(self, text: str) -> str:
        """Add ``text``; return what is safe to show. After a match, :attr:`matched` is set and
        everything from the stop string on is dropped."""
        if self.matched is not None:
            return ""
        if not self._stops:
            return text
        pending = self._pending + text
        first = -1
        for stop in self._stops:
            index = pending.find(stop)
            if index != -1 and (first == -1 or index < first):
                first, self.matched = index, stop
        if first != -1:
            self._pending = ""
            return pending[:first]
        keep = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(pending)), keep, -1):
                if pending.endswith(stop[:size]):
                    keep = size
                    break
        self._pending = pending[len(pending) - keep :]
        return pending[: len(pending) - keep]

    def flush(self) -> str:
        """Release the withheld tail: the text it might have continued has ended (generation
        finished, or reasoning or a tool call began), so it did not become a stop."""
        pending, self._pending = self._pending, ""
        return "" if self.matched is not None else pending
