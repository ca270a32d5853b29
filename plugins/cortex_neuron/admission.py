"""Per-model admission: a bounded number generating, a bounded queue, a bounded wait, by class.

Without a bound, a busy model makes requests hang until the client gives up (the original
neuron's per-model mutex); here a request either gets a slot, waits its turn in a queue of fixed
length for a fixed time, or is told at once to come back (503 + Retry-After). A slot is released
however the request ends — success, error, cancellation — because it is held by a context
manager.

The queue is ordered by request class (``x-cortex-request-class``, which the gateway forwards
from Claude Code's hint header): an agent's interactive main-loop turn should not wait behind a
pile of background summaries. Priority alone would starve the lowest class under a steady stream
of higher ones, so every waiter counts the later arrivals served before it, and once that count
reaches ``max_bypass`` it is served in arrival order ahead of everyone younger. A waiter that found
``A`` requests queued ahead of it is therefore admitted after at most ``A + max_bypass`` other
admissions (at most ``max_queued - 1 + max_bypass``), whatever its class; ``max_wait_s`` still
caps the wall-clock wait.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from cortex_kernel.errors import Overloaded

DEFAULT_CLASS = "main"
DEFAULT_PRIORITIES: Mapping[str, int] = {"main": 3, "subagent": 2, "compaction": 1, "auxiliary": 0}
DEFAULT_MAX_BYPASS = 8
# A class header longer than this is nobody's class name: it counts as the default class.
_MAX_CLASS_LENGTH = 64


@dataclass(eq=False)
class _Waiter:
    """One queued request: its grant, its class's priority, its arrival order, how often overtaken."""

    future: asyncio.Future[None]
    priority: int
    arrival: int
    request_class: str
    bypassed: int = field(default=0)


class AdmissionGate:
    """Admission for one model: ``max_in_flight`` running, ``max_queued`` waiting, by class."""

    def __init__(
        self,
        max_in_flight: int,
        max_queued: int,
        max_wait_s: float,
        priorities: Mapping[str, int] | None = None,
        max_bypass: int = DEFAULT_MAX_BYPASS,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.max_queued = max_queued
        self.max_wait_s = max_wait_s
        self.priorities = dict(DEFAULT_PRIORITIES if priorities is None else priorities)
        self.max_bypass = max_bypass
        self.in_flight = 0
        self._waiters: list[_Waiter] = []
        self._arrivals = itertools.count()
        self.rejected = 0

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def queued_by_class(self) -> dict[str, int]:
        """Waiters per request class (for the metrics)."""
        counts: dict[str, int] = {}
        for waiter in self._waiters:
            counts[waiter.request_class] = counts.get(waiter.request_class, 0) + 1
        return counts

    def request_class(self, value: str | None) -> str:
        """The class a header value names: a configured class, else ``main`` (absent, unknown, junk)."""
        if value is None or len(value) > _MAX_CLASS_LENGTH:
            return DEFAULT_CLASS
        name = value.strip().lower()
        return name if name in self.priorities else DEFAULT_CLASS

    def _priority(self, request_class: str) -> int:
        return self.priorities.get(request_class, self.priorities.get(DEFAULT_CLASS, 0))

    def _retry_after(self) -> float:
        return max(1.0, min(self.max_wait_s, 5.0))

    @asynccontextmanager
    async def admit(self, request_class: str | None = None) -> AsyncIterator[None]:
        """Hold a generation slot for the body of the ``async with``; ``request_class`` orders the
        queue (``None`` or an unknown name is ``main``)."""
        await self._acquire(self.request_class(request_class))
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, request_class: str) -> None:
        if self.in_flight < self.max_in_flight and not self._waiters:
            self.in_flight += 1
            return
        if len(self._waiters) >= self.max_queued:
            raise Overloaded(
                f"model is busy: {self.in_flight} running and {self.queued} queued",
                code="model_overloaded",
                retry_after=self._retry_after(),
            )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(future, self._priority(request_class), next(self._arrivals), request_class)
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(future), self.max_wait_s)
        except TimeoutError:
            if future.done() and not future.cancelled():
                # Granted at the same moment the wait ran out: keep the slot.
                return
            self._forget(waiter)
            raise Overloaded(
                f"model is busy: waited {self.max_wait_s:g}s for a slot",
                code="model_overloaded",
                retry_after=self._retry_after(),
            ) from None
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # the slot was handed over, but nobody will use it
            else:
                self._forget(waiter)
            raise

    def _forget(self, waiter: _Waiter) -> None:
        waiter.future.cancel()
        if waiter in self._waiters:
            self._waiters.remove(waiter)

    def _next(self) -> _Waiter:
        """The waiter to serve: the oldest one overtaken ``max_bypass`` times, else the highest
        class, oldest first within it. ``_waiters`` is in arrival order."""
        for waiter in self._waiters:
            if waiter.bypassed >= self.max_bypass:
                return waiter
        return max(self._waiters, key=lambda w: (w.priority, -w.arrival))

    def _release(self) -> None:
        while self._waiters:
            chosen = self._next()
            self._waiters.remove(chosen)
            if chosen.future.done():
                continue  # it gave up (timed out or went away) in the meantime
            for waiter in self._waiters:
                if waiter.arrival < chosen.arrival:
                    waiter.bypassed += 1
            chosen.future.set_result(None)  # the slot passes straight to the chosen waiter
            return
        self.in_flight -= 1
