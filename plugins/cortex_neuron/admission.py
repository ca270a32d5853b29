"""Per-model admission: a bounded number generating, a bounded queue, a bounded wait.

Without a bound, a busy model makes requests hang until the client gives up (the original
neuron's per-model mutex); here a request either gets a slot, waits its turn in a queue of fixed
length for a fixed time, or is told at once to come back (503 + Retry-After). A slot is released
however the request ends — success, error, cancellation — because it is held by a context
manager.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from cortex_kernel.errors import Overloaded


class AdmissionGate:
    """FIFO admission for one model: ``max_in_flight`` running, ``max_queued`` waiting."""

    def __init__(self, max_in_flight: int, max_queued: int, max_wait_s: float) -> None:
        self.max_in_flight = max_in_flight
        self.max_queued = max_queued
        self.max_wait_s = max_wait_s
        self.in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def _retry_after(self) -> float:
        return max(1.0, min(self.max_wait_s, 5.0))

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold a generation slot for the body of the ``async with``."""
        await self._acquire()
        try:
            yield
        finally:
            self._release()

    async def _acquire(self) -> None:
        if self.in_flight < self.max_in_flight and not self._waiters:
            self.in_flight += 1
            return
        if len(self._waiters) >= self.max_queued:
            raise Overloaded(
                f"model is busy: {self.in_flight} running and {self.queued} queued",
                code="model_overloaded",
                retry_after=self._retry_after(),
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.max_wait_s)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                # Granted at the same moment the wait ran out: keep the slot.
                return
            self._forget(waiter)
            raise Overloaded(
                f"model is busy: waited {self.max_wait_s:g}s for a slot",
                code="model_overloaded",
                retry_after=self._retry_after(),
            ) from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the slot was handed over, but nobody will use it
            else:
                self._forget(waiter)
            raise

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        waiter.cancel()
        with suppress(ValueError):
            self._waiters.remove(waiter)

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the next in line
                return
        self.in_flight -= 1
