"""Watching a relayed reply for metrics without changing a byte of it.

The tap notes when the first and each later chunk arrive (TTFT and inter-token gaps), keeps the
last few chunks (where a streamed ``usage`` object sits), and when the reply ends emits one
:class:`cortex_kernel.events.RequestFinished`.
"""

from __future__ import annotations

import collections
import time

import msgspec

from cortex_kernel.events import EventBus, RequestFinished

MAX_GAPS = 4096


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_details: dict[str, int] | None = None


class _WithUsage(msgspec.Struct):
    usage: _Usage | None = None


_usage_decoder = msgspec.json.Decoder(_WithUsage)


def find_usage(tail: bytes) -> _Usage | None:
    """The last ``usage`` object in SSE ``tail`` or in a whole JSON body."""
    if tail.lstrip().startswith(b"{"):
        try:
            return _usage_decoder.decode(tail).usage
        except msgspec.DecodeError:
            return None
    for frame in reversed(tail.split(b"\n\n")):
        line = frame.strip()
        if line.startswith(b"data: {") and b'"usage"' in line:
            try:
                found = _usage_decoder.decode(line[6:]).usage
            except msgspec.DecodeError:
                continue
            if found is not None:
                return found
    return None


_ROLE_FRAME = b'"delta":{"role":"assistant","content":""}'


def _role_only(data: bytes) -> bool:
    """Whether ``data`` is just the opening SSE frame that announces the assistant role."""
    return data.count(b"data: ") == 1 and _ROLE_FRAME in data


class RequestTap:
    """Timing and usage of one request, emitted once when it ends."""

    def __init__(self, events: EventBus, *, dialect: str, endpoint: str, model: str, started: float) -> None:
        self.events = events
        self.dialect = dialect
        self.endpoint = endpoint
        self.model = model
        self.started = started
        self.node: str | None = None
        self.waited_s = 0.0
        self.cold_start = False
        self.failovers = 0
        self.streamed = False
        self.direct = False  # answered on the direct path (cortex_gateway.direct_relay)
        self._first: float | None = None
        self._last = 0.0
        self._gaps: list[float] = []
        self._tail: collections.deque[bytes] = collections.deque(maxlen=4)
        self._done = False

    def chunk(self, data: bytes) -> None:
        now = time.perf_counter()
        if self._first is None:
            if _role_only(data):
                return  # the neuron's opening frame carries no token; TTFT is the first token
            self._first = now
        elif len(self._gaps) < MAX_GAPS:
            self._gaps.append(now - self._last)
        self._last = now
        self._tail.append(data)

    def finish(self, status: int, error: str | None = None) -> None:
        if self._done:
            return
        self._done = True
        usage = find_usage(b"".join(self._tail)) if self._tail else None
        cached = (usage.prompt_tokens_details or {}).get("cached_tokens") if usage else None
        self.events.emit(
            RequestFinished(
                dialect=self.dialect,
                endpoint=self.endpoint,
                model=self.model,
                node=self.node,
                status=status,
                error=error,
                streamed=self.streamed,
                duration_s=time.perf_counter() - self.started,
                first_token_s=(self._first - self.started) if self._first is not None else None,
                waited_s=self.waited_s,
                cold_start=self.cold_start,
                failovers=self.failovers,
                prompt_tokens=usage.prompt_tokens if usage else None,
                completion_tokens=usage.completion_tokens if usage else None,
                cached_tokens=cached,
                inter_token_s=tuple(self._gaps) if self.streamed else (),
                direct=self.direct,
            )
        )
