"""The server's send path: chunked body pieces framed without h11, writes drained only when needed.

Both are shortcuts on the gateway's hot path (issue #17), so they are held to the behaviour of
what they replace: the same bytes on the wire as hypercorn's own HTTP/1.1 protocol for any
sequence of body pieces, and a client that stops reading still holds the app back.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Literal

import h11
import pytest
from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import RawData
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.types import Scope

from cortex_kernel.config.addresses import parse_listen
from cortex_kernel.connection import GuardedH11
from cortex_kernel.serving import Listener, _serve
from tests.daemons import free_port

pieces_strategy = st.lists(st.binary(max_size=300), max_size=8)


def streaming_app(pieces: list[bytes], headers: list[tuple[bytes, bytes]]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for piece in pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


async def answer_lifespan(receive: Any, send: Any) -> None:
    """The lifespan protocol for a bare app served by ``_serve``: start-up and shut-down succeed."""
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


async def wire_bytes(protocol_class: type[H11Protocol], app: Any, request: bytes) -> bytes:
    """What ``protocol_class`` writes to the socket answering ``request`` with ``app``."""
    out: list[bytes] = []

    async def send(event: object) -> None:
        if isinstance(event, RawData):
            out.append(event.data)

    config = HypercornConfig()
    config.include_server_header = False
    config.include_date_header = False
    loop = asyncio.get_running_loop()
    async with TaskGroup(loop) as task_group:
        protocol = protocol_class(
            wrap_app(app, config.wsgi_max_body_size, "asgi"),
            config,
            WorkerContext(None),
            task_group,
            ConnectionState({}),
            False,
            ("127.0.0.1", 1),
            ("127.0.0.1", 2),
            send,
        )
        await protocol.initiate()
        await protocol.handle(RawData(request))
        for _ in range(200):
            await asyncio.sleep(0)
            if isinstance(protocol.connection, h11.Connection) and protocol.connection.our_state in (
                h11.DONE,
                h11.IDLE,
                h11.MUST_CLOSE,
                h11.CLOSED,
            ):
                break
    return b"".join(out)


@settings(max_examples=60, deadline=None)
@given(
    pieces=pieces_strategy,
    length=st.booleans(),
    method=st.sampled_from([b"GET", b"HEAD"]),
    version=st.sampled_from([b"1.1", b"1.0"]),
)
async def test_body_bytes_are_hypercorns_own(
    pieces: list[bytes], length: bool, method: bytes, version: bytes
) -> None:
    """Chunked or by Content-Length, GET or HEAD, HTTP/1.1 or 1.0: byte for byte the same."""
    headers = [(b"content-type", b"text/event-stream")]
    if length:
        headers.append((b"content-length", str(sum(map(len, pieces))).encode()))
    request = method + b" / HTTP/" + version + b"\r\nhost: x\r\n\r\n"
    app = streaming_app(pieces, headers)
    ours = await wire_bytes(GuardedH11, app, request)
    theirs = await wire_bytes(H11Protocol, app, request)
    assert ours == theirs
    assert ours.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("server", ["hypercorn", "httptools"])
async def test_a_client_that_stops_reading_holds_the_app_back(
    server: Literal["hypercorn", "httptools"],
) -> None:
    """Writes skip the drain only while the kernel takes them whole; a stalled client pauses the app
    (on either server)."""
    piece = b"x" * 65536
    sent = 0
    done = False

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        nonlocal sent
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while not done:  # a send after the client left is dropped, not refused: stop by flag
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            sent += len(piece)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    port = free_port()
    stop = asyncio.Event()
    serving = asyncio.create_task(
        _serve(Listener(app, parse_listen(f"127.0.0.1:{port}"), "test", server=server), 1.0, stop)
    )
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    try:
        for _ in range(100):
            try:
                await asyncio.get_running_loop().sock_connect(client, ("127.0.0.1", port))
                break
            except OSError:
                await asyncio.sleep(0.05)
        client.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        for _ in range(600):  # until the app is well into its reply (30 s at most)
            if sent >= 4 * len(piece):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # unbounded, the app would queue hundreds of MiB by now
        first = sent
        await asyncio.sleep(0.5)
        assert 0 < sent < 64 * 1024 * 1024
        assert sent == first  # paused, not merely slow
    finally:
        done = True
        client.close()
        stop.set()
        await asyncio.wait_for(serving, 30)


async def test_an_app_writing_on_after_a_reset_does_not_drain_each_write(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Once the connection is lost, hypercorn's path drops the app's writes without a drain.

    Each drain re-raised the reader's stored ``ConnectionResetError``, the same object every time,
    so its traceback (and the frames it holds) grew by a few frames with every chunk the app
    still sent: an app that streams on after the client reset held ever more memory. The write
    before each drain also made asyncio log a warning per chunk.
    """
    failed_drains: list[BaseException] = []
    drain = asyncio.StreamWriter.drain

    async def counted_drain(self: asyncio.StreamWriter) -> None:
        try:
            await drain(self)
        except BaseException as exc:
            failed_drains.append(exc)
            raise

    monkeypatch.setattr(asyncio.StreamWriter, "drain", counted_drain)
    finished = asyncio.Event()
    after_reset = 200

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        await receive()  # the (empty) request body
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        for _ in range(after_reset):  # an app that does not stop when its client leaves
            await send({"type": "http.response.body", "body": b"more", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        finished.set()

    port = free_port()
    stop = asyncio.Event()
    serving = asyncio.create_task(
        _serve(Listener(app, parse_listen(f"127.0.0.1:{port}"), "test", server="hypercorn"), 1.0, stop)
    )
    loop = asyncio.get_running_loop()
    client = socket.socket()
    client.setblocking(False)
    try:
        for _ in range(100):
            try:
                await loop.sock_connect(client, ("127.0.0.1", port))
                break
            except OSError:
                await asyncio.sleep(0.05)
        await loop.sock_sendall(client, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        received = b""
        while b"first" not in received:
            received += await asyncio.wait_for(loop.sock_recv(client, 65536), 30)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.close()  # linger 0: a reset, which the server's reader stores as its exception
        await asyncio.wait_for(finished.wait(), 30)
    finally:
        client.close()
        stop.set()
        await asyncio.wait_for(serving, 30)
    assert len(failed_drains) < 3, f"{len(failed_drains)} drains failed after the reset"
    assert "socket.send() raised exception" not in caplog.text
