"""A scripted HTTP server on loopback for the relay client's tests, and what its scripts write.

``asyncio.start_server`` writes exactly the bytes a script says, for what a real server would
never send (replies one byte at a time, malformed framings, hang-ups); the helpers build those
replies and drive a :class:`~cortex_gateway.neuron_http.NeuronPool` against it. Shared by
``test_neuron_http.py``, ``test_neuron_http_abort.py`` and ``test_neuron_http_h11.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

from cortex_gateway.neuron_http import NeuronPool, NeuronResponse, Origin

HANG_UP = "hang up"  # a script returns this to have the server close the connection itself

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[object]]


class RawServer:
    """``asyncio.start_server`` on a free loopback port, running ``script`` on each connection.

    Unless the script returns :data:`HANG_UP`, the server then holds the connection until the
    client closes it, and counts that in :attr:`client_closes`.
    """

    def __init__(self, script: Script, host: str) -> None:
        self.script = script
        self.host = host
        self.connections = 0
        self.client_closes = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        port = self._server.sockets[0].getsockname()[1]
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.origin = Origin.from_endpoint(f"http://{shown}:{port}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if await self.script(reader, writer) != HANG_UP:
                await reader.read()  # until the client closes the connection
                self.client_closes += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            self.client_closes += 1  # the client went away while the script waited on it
        except asyncio.CancelledError:
            pass  # stopped at teardown (ending normally keeps 3.11's stream callback from logging it)
        finally:
            writer.close()

    async def stop(self) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request (head and Content-Length body) as sent; IncompleteReadError at EOF."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + (await reader.readexactly(length) if length else b"")


def head(status: bytes, *fields: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    return b"%s %s\r\n%s\r\n" % (version, status, b"".join(field + b"\r\n" for field in fields))


def sized(body: bytes, *fields: bytes) -> bytes:
    """A whole ``200`` reply framed by Content-Length."""
    return head(b"200 OK", b"content-length: %d" % len(body), *fields) + body


def chunks(*pieces: bytes, trailer: bytes = b"") -> bytes:
    """A chunked body: ``pieces`` as chunks, then the last chunk, ``trailer`` fields, blank line."""
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n" + trailer + b"\r\n"


CHUNKED = head(b"200 OK", b"content-type: text/event-stream", b"transfer-encoding: chunked")


def answering(*replies: bytes, hang_up: bool = False) -> Script:
    """Answer each request on a connection with the next of ``replies`` (the last one repeats);
    with ``hang_up``, close the connection after the first answer."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
        for n in itertools.count():
            await read_request(reader)  # IncompleteReadError once the client closes
            writer.write(replies[min(n, len(replies) - 1)])
            await writer.drain()
            if hang_up:
                return HANG_UP
        return None  # pragma: no cover

    return script


async def trickle(writer: asyncio.StreamWriter, data: bytes, gap_s: float) -> None:
    """Write ``data`` one byte at a time, ``gap_s`` apart, so each byte is its own segment."""
    for i in range(len(data)):
        writer.write(data[i : i + 1])
        await writer.drain()
        await asyncio.sleep(gap_s)


async def eventually(condition: Callable[[], bool], within_s: float = 1.0) -> None:
    """Wait until ``condition()`` holds; fail the test if it does not within ``within_s``."""
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.005)


async def get(
    pool: NeuronPool, origin: Origin, path: str = "/", stall_s: float | None = 2.0
) -> NeuronResponse:
    return await pool.request(origin, "GET", path, b"", b"", stall_timeout_s=stall_s)
