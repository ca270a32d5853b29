"""The relay on the httptools server's ``cortex.splice`` path, end to end on loopback.

A real :class:`NeuronPool` talks to an ``asyncio.start_server`` neuron that writes scripted
bytes; the gateway's :class:`RelayStream` answers on the real httptools server (or hypercorn,
which offers no splice); the client is a raw socket read through h11. What the neuron saw (bytes it
managed to write, the gateway closing its connection) is the evidence for flow control and for
a client leaving; the node's in-flight count and the pool's request slots show nothing leaked.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal

import h11
import pytest
from starlette.types import Message, Receive, Scope, Send

from cortex_gateway.fleet import Node
from cortex_gateway.neuron_http import NeuronPool, Origin
from cortex_gateway.proxy import NeuronReply, RelayStream
from cortex_gateway.tap import RequestTap
from cortex_kernel.config.addresses import parse_listen
from cortex_kernel.errors import Overloaded
from cortex_kernel.events import EventBus, RequestFinished
from cortex_kernel.serving import Listener, _serve
from cortex_kernel.splice import splice_of
from tests.daemons import free_port

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def frame(n: int) -> bytes:
    return b'data: {"n":%d}\n\n' % n


class Neuron:
    """A scripted neuron: ``script`` answers each connection's request; it records what it wrote
    and whether the gateway closed the connection on it."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.written = 0
        self.closed_by_gateway = asyncio.Event()

    async def start(self) -> Origin:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return Origin.from_endpoint(f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await self.script(reader, writer)
            await reader.read()  # until the gateway closes the connection (the body is in there)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # stopped at teardown (ending normally keeps 3.11's stream callback from logging it)
        finally:
            self.closed_by_gateway.set()
            writer.close()

    def write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        self.written += len(data)

    async def stop(self) -> None:
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 5)


async def paced_forever(neuron: Neuron, writer: asyncio.StreamWriter) -> None:
    """An endless stream of frames 10 ms apart: the gateway has to be the one that stops it."""
    neuron.write(writer, SSE_HEAD)
    for n in range(100_000):
        neuron.write(writer, chunk(frame(n)))
        await writer.drain()
        await asyncio.sleep(0.01)


class Gateway:
    """A relay route alone: the request goes to the neuron, its streamed reply back through
    :class:`RelayStream`, on the given server."""

    def __init__(self, origin: Origin, stall_s: float | None, wrap_send: bool) -> None:
        self.origin = origin
        self.stall_s = stall_s
        self.wrap_send = wrap_send
        self.pool = NeuronPool()
        self.node = Node(name="n1", endpoint="http://neuron")
        self.finished: list[RequestFinished] = []
        self.events = EventBus([self])
        self.spliced: list[bool] = []
        self.replies: list[NeuronReply] = []

    def handle(self, event: object) -> None:
        if isinstance(event, RequestFinished):
            self.finished.append(event)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if self.wrap_send:  # a middleware that records the reply: it must see every byte
            inner = send

            async def send(message: Message) -> None:
                await inner(message)

        self.spliced.append(splice_of(scope, send) is not None)
        tap = RequestTap(self.events, dialect="openai", endpoint="/v1/x", model="m", started=0.0)
        tap.node = "n1"
        self.node.in_flight["m"] = self.node.in_flight.get("m", 0) + 1
        upstream = await self.pool.request(
            self.origin, "POST", "/v1/x", b"", b"{}", stall_timeout_s=self.stall_s
        )
        reply = NeuronReply(self.node, "m", upstream, tap)
        self.replies.append(reply)
        await RelayStream(reply)(scope, receive, send)


@contextlib.asynccontextmanager
async def serving(
    script: Script,
    *,
    server: Literal["hypercorn", "httptools"] = "httptools",
    stall_s: float | None = None,
    wrap_send: bool = False,
) -> AsyncIterator[tuple[Neuron, Gateway, int]]:
    neuron = Neuron(script)
    origin = await neuron.start()
    gateway = Gateway(origin, stall_s, wrap_send)
    port = free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(
        _serve(Listener(gateway.app, parse_listen(f"127.0.0.1:{port}"), "test", server=server), 1.0, stop)
    )
    try:
        yield neuron, gateway, port
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await gateway.pool.close()
        await neuron.stop()


async def connect(port: int, rcvbuf: int | None = None) -> socket.socket:
    client = socket.socket()
    client.setblocking(False)
    if rcvbuf is not None:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    for _ in range(200):
        try:
            await asyncio.get_running_loop().sock_connect(client, ("127.0.0.1", port))
            break
        except OSError:
            await asyncio.sleep(0.05)
    request = b"POST /v1/x HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"
    await asyncio.get_running_loop().sock_sendall(client, request)
    return client


async def read_reply(client: socket.socket, until: bytes | None = None) -> tuple[int, bytes, bool]:
    """(status, body, whether it ended cleanly); with ``until``, stop once the body holds it."""
    parser = h11.Connection(h11.CLIENT)
    parser.send(h11.Request(method="POST", target="/v1/x", headers=[("host", "x"), ("content-length", "2")]))
    parser.send(h11.Data(data=b"{}"))
    parser.send(h11.EndOfMessage())
    status, body = 0, bytearray()
    loop = asyncio.get_running_loop()
    while True:
        event = parser.next_event()
        if event is h11.NEED_DATA:
            data = await asyncio.wait_for(loop.sock_recv(client, 65536), 30)
            parser.receive_data(data)
            if not data:
                return status, bytes(body), False
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
            if until is not None and until in body:
                return status, bytes(body), False
        elif isinstance(event, h11.EndOfMessage):
            return status, bytes(body), True


async def eventually(check: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.02)


def no_leak(gateway: Gateway) -> bool:
    return gateway.node.in_flight.get("m") == 0 and gateway.pool.busy(gateway.origin) == 0


@pytest.mark.parametrize(
    ("server", "wrap_send"), [("httptools", False), ("httptools", True), ("hypercorn", False)]
)
async def test_a_stream_is_relayed_whole_with_or_without_the_splice(
    server: Literal["hypercorn", "httptools"], wrap_send: bool
) -> None:
    """The splice is taken only on the httptools server with an unwrapped ``send``; the bytes,
    the tap's timings and the end are the same either way."""
    frames = [frame(n) for n in range(40)]

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        neuron.write(writer, SSE_HEAD)
        for n, data in enumerate(frames):
            neuron.write(writer, chunk(data))
            if n % 5 == 0:
                await writer.drain()
                await asyncio.sleep(0.005)  # some reads carry one chunk, some several
        neuron.write(writer, b"0\r\n\r\n")

    async with serving(script, server=server, wrap_send=wrap_send) as (neuron, gateway, port):
        client = await connect(port)
        try:
            status, body, clean = await read_reply(client)
        finally:
            client.close()
        assert (status, body, clean) == (200, b"".join(frames), True)
        assert gateway.spliced == [server == "httptools" and not wrap_send]
        await eventually(lambda: no_leak(gateway) and bool(gateway.finished), "the reply was not closed")
        finished = gateway.finished[0]
        assert finished.status == 200 and finished.error is None and finished.streamed
        assert finished.first_token_s is not None and len(finished.inter_token_s) >= 7


async def test_a_slow_client_pauses_the_neuron_on_the_splice_path() -> None:
    """A client that stops reading pauses the neuron's connection (nothing buffered beyond a
    transport's high-water mark), no stall is counted while it is paused, and every byte
    arrives in order once the client reads again."""
    piece = bytes(range(256)) * 128  # 32 KiB
    count = 1024  # 32 MiB in all
    done = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        neuron.write(writer, SSE_HEAD)
        for _ in range(count):
            neuron.write(writer, chunk(piece))
            await writer.drain()
        neuron.write(writer, b"0\r\n\r\n")
        done.set()

    async with serving(script, stall_s=0.3) as (neuron, gateway, port):
        client = await connect(port, rcvbuf=65536)
        try:
            await eventually(lambda: neuron.written > 4 * len(piece), "the neuron never got going")
            await asyncio.sleep(1.0)  # well past the stall timeout; unbounded, all 32 MiB by now
            first = neuron.written
            await asyncio.sleep(0.5)
            assert neuron.written == first < count * len(piece) // 4  # paused, not merely slow
            assert gateway.spliced == [True]
            status, body, clean = await read_reply(client)
        finally:
            client.close()
        assert (status, clean) == (200, True)
        assert body == piece * count
        assert done.is_set()
        await eventually(lambda: no_leak(gateway), "the reply's count or slot leaked")


async def test_a_client_leaving_mid_stream_closes_the_neuron_connection_on_the_splice_path() -> None:
    """The client goes while tokens still come: the gateway closes the neuron's connection (the
    neuron stops generating) and gives back the in-flight count and the request slot."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await paced_forever(neuron, writer)

    async with serving(script) as (neuron, gateway, port):
        client = await connect(port)
        try:
            status, body, _ = await read_reply(client, until=frame(3))
            assert status == 200 and body.startswith(frame(0))
        finally:
            client.close()
        await asyncio.wait_for(neuron.closed_by_gateway.wait(), 15)
        assert gateway.spliced == [True]
        await eventually(lambda: no_leak(gateway), "the reply's count or slot leaked")
        await eventually(lambda: bool(gateway.finished), "the request never finished")


async def test_a_stall_mid_stream_ends_with_an_error_event_on_the_splice_path() -> None:
    """The neuron stops sending on a frame boundary: the client gets what came, an error event,
    ``[DONE]`` and a clean end, and the neuron's connection is closed."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        neuron.write(writer, SSE_HEAD + chunk(frame(0)) + chunk(frame(1)))
        await writer.drain()
        await reader.read()  # silent until the gateway gives up on it

    async with serving(script, stall_s=0.3) as (neuron, gateway, port):
        client = await connect(port)
        try:
            status, body, clean = await read_reply(client)
        finally:
            client.close()
        assert (status, clean) == (200, True)
        assert body.startswith(frame(0) + frame(1) + b"data: {")
        assert b"no bytes from the neuron" in body and body.endswith(b"data: [DONE]\n\n")
        assert gateway.spliced == [True]
        await asyncio.wait_for(neuron.closed_by_gateway.wait(), 15)
        await eventually(lambda: no_leak(gateway), "the reply's count or slot leaked")
        assert gateway.finished[0].error == "upstream_broken"


async def test_an_interrupted_reply_ends_with_its_error_on_the_splice_path() -> None:
    """A drain interrupts a spliced reply: its error event and a clean end, as on the task path."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await paced_forever(neuron, writer)

    async with serving(script) as (neuron, gateway, port):
        client = await connect(port)
        try:
            status, _, _ = await read_reply(client, until=frame(2))
            gateway.replies[0].interrupt(Overloaded("the gateway is shutting down", code="shutting_down"))
            rest, clean = await read_rest(client)
        finally:
            client.close()
        assert status == 200 and clean
        assert b'"shutting_down"' in rest and rest.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
        await asyncio.wait_for(neuron.closed_by_gateway.wait(), 15)
        await eventually(lambda: no_leak(gateway), "the reply's count or slot leaked")
        assert gateway.finished[0].error == "shutting_down"


async def read_rest(client: socket.socket) -> tuple[bytes, bool]:
    """The rest of a chunked reply whose head and first pieces were read: its raw bytes, up to
    the last chunk."""
    loop = asyncio.get_running_loop()
    raw = bytearray()
    while not raw.endswith(b"0\r\n\r\n"):
        data = await asyncio.wait_for(loop.sock_recv(client, 65536), 30)
        if not data:
            return bytes(raw), False
        raw += data
    return bytes(raw), True
