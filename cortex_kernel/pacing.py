"""A stream of events with keep-alives in its silences, for dialects that stream to clients.

A client (or a proxy in front of it) gives up on a stream that says nothing for long, and a
model may be silent for minutes while it loads or prefills. Every streaming dialect needs the
same thing: the events as they come, and a marker whenever none came for a while, which the
dialect turns into its own keep-alive (an SSE comment, Anthropic's ``ping``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TypeVar

T = TypeVar("T")


async def _next(events: AsyncIterator[T]) -> T | None:
    # None marks the end: StopAsyncIteration must not travel through a task's result.
    return await anext(events, None)


async def with_keepalives(events: AsyncIterator[T], every_s: float) -> AsyncGenerator[T | None, None]:
    """``events`` as they come, with ``None`` whenever none came for ``every_s`` seconds.

    The next event is awaited in a task the timer never cancels, so waiting for a slow upstream
    (inside ``events``) is not interrupted by a keep-alive. Closing this generator cancels that
    task and closes ``events``, which closes the upstream reply. ``events`` must not yield
    ``None`` itself.
    """
    pending: asyncio.Task[T | None] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.get_running_loop().create_task(_next(events))
            done, _ = await asyncio.wait({pending}, timeout=every_s)
            if not done:
                yield None
                continue
            task, pending = pending, None
            event = task.result()
            if event is None:
                return
            yield event
    finally:
        if pending is not None:
            pending.cancel()
            await asyncio.wait({pending})
        with contextlib.suppress(Exception):
            await events.aclose()  # type: ignore[attr-defined]
