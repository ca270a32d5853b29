"""The httptools server's listener: accepting, the connection cap, and the bounded drain.

What :func:`cortex_kernel.serving._serve` does around hypercorn's protocol, done around
:class:`~cortex_kernel.http11.HttpConnection`: connections over the cap are closed as soon as they
are accepted; on ``stop`` the listeners close, idle connections close at once, a request in hand
(its head begun) is answered and its connection then closed, and whatever is still open when
``grace_s`` runs out is cut.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.types import ASGIApp

from cortex_kernel.config.schema import ConnectionLimits
from cortex_kernel.direct import DirectRoute
from cortex_kernel.http11 import HttpConnection
from cortex_kernel.http11_framing import DateHeader
from cortex_kernel.lanes import LaneKey


class Site:
    """What every connection of one listener shares."""

    def __init__(
        self,
        app: ASGIApp,
        state: dict[str, Any],
        limits: ConnectionLimits,
        cap: int,
        name: str,
        direct: Mapping[LaneKey, DirectRoute] | None = None,
    ) -> None:
        self.app = app
        # The app's direct routes (cortex_kernel.direct), by (method, path); empty: none.
        self.direct: dict[LaneKey, DirectRoute] = dict(direct or {})
        self.state = state
        self.limits = limits
        self.cap = cap
        self.name = name
        self.loop = asyncio.get_running_loop()
        self.connections: set[HttpConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.terminated = False
        self.date = DateHeader()
        self.changed = asyncio.Event()

    def track(self, task: asyncio.Task[None]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if self.terminated:  # only a drain waits for it; not a Python call per request otherwise
            self.changed.set()

    async def drain(self, grace_s: float) -> None:
        """Close idle connections now and wait up to ``grace_s`` for the others and their apps."""
        self.terminated = True
        for connection in list(self.connections):
            connection.shutdown()
        deadline = self.loop.time() + grace_s
        while self.connections or self.tasks:
            self.changed.clear()
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                break
        for connection in list(self.connections):
            connection.abort()


async def serve_http11(
    site: Site, sockets: Sequence[socket.socket], backlog: int, stop: asyncio.Event, grace_s: float
) -> None:
    """Serve ``sockets`` with :class:`HttpConnection` until ``stop`` is set, then drain."""
    servers = [
        await site.loop.create_server(lambda: HttpConnection(site), sock=sock, backlog=backlog)
        for sock in sockets
    ]
    try:
        await stop.wait()
    finally:
        for server in servers:
            server.close()
        await site.drain(grace_s)
