"""The least a Python relay can do: bytes in, the same bytes out, on uvloop, no HTTP at all.

An anchor for ``gateway_overhead.py --anchor tcp-relay``: each client connection gets its own
connection to the upstream, and whatever either side sends is written to the other from the
read callback (``data_received`` to ``transport.write``), with reading paused while the other
side's buffer is full. No parsing, no routing, no metrics: what remains of a relayed token is the
event loop's turn and one Python call, so its CPU per paced stream is the floor any proxy written
in Python on uvloop sits on, as nginx's is for one written in C.

    python bench/tcp_relay.py --port 8001 --upstream 127.0.0.1:8000
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from relay_cli import run


class Side(asyncio.Protocol):
    """One end of a relayed pair; ``peer`` is the other end once both are connected."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Side | None = None
        self.early: list[bytes] = []  # what arrived before the peer connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self.early.append(data)
        else:
            peer.transport.write(data)

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


class Client(Side):
    """A client's connection: it opens its own to the upstream and pairs the two."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self.host, self.port = host, port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        asyncio.get_running_loop().create_task(self._pair())

    async def _pair(self) -> None:
        try:
            _, upstream = await asyncio.get_running_loop().create_connection(Side, self.host, self.port)
        except OSError:
            if self.transport is not None:
                self.transport.close()
            return
        upstream.peer, self.peer = self, upstream
        assert upstream.transport is not None
        for data in self.early:
            upstream.transport.write(data)
        self.early.clear()


def _clients(host: str, port: int) -> Callable[[], asyncio.Protocol]:
    return lambda: Client(host, port)


if __name__ == "__main__":
    run(__doc__ or "", _clients)
