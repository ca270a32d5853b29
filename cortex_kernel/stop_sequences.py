"""Stop sequences in streamed text, shared by harnesses and dialects.

Text that could be the start of a stop string is held back until it is proven not to be one, so
a client never sees part of a sequence that is then cut off; on a match, everything from the
stop string on is dropped and :attr:`StopMatcher.matched` says which sequence it was (Anthropic
reports it as ``stop_sequence``).
"""

from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
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
