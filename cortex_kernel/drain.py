"""The shutdown signal a daemon's plugins share: draining started, and by when it must be over.

Serving sets it on SIGTERM/SIGINT (see :func:`cortex_kernel.serving.serve_forever`). Plugins
read it to stop advertising readiness at once, and to end every response still open shortly
before the grace period runs out with an error in their own dialect, instead of letting the
server cut the connection mid-stream when the grace is over.
"""

from __future__ import annotations

import asyncio

# How long before the end of the grace the open streams are ended: enough for the error event
# to reach the client, never more than a quarter of a short grace.
CUTOFF_LEAD_S = 1.0


class Drain:
    """Per-kernel drain state (one per daemon role, created with its :class:`Kernel`)."""

    def __init__(self) -> None:
        self.draining = asyncio.Event()
        self.deadline: float | None = None  # event-loop time when the grace runs out
        self.grace_s: float | None = None

    @property
    def active(self) -> bool:
        return self.draining.is_set()

    def begin(self, grace_s: float) -> None:
        """Start draining (idempotent: a second signal keeps the first deadline)."""
        if self.draining.is_set():
            return
        self.grace_s = grace_s
        self.deadline = asyncio.get_running_loop().time() + grace_s
        self.draining.set()

    async def wait_cutoff(self) -> None:
        """Return when open responses must be ended: shortly before the grace runs out."""
        await self.draining.wait()
        assert self.deadline is not None and self.grace_s is not None
        lead = min(CUTOFF_LEAD_S, self.grace_s / 4)
        delay = self.deadline - lead - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)
