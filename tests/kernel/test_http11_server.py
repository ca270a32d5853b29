"""The httptools server (``server = "httptools"``, cortex_kernel/http11.py) beside hypercorn's.

The bytes it writes are held to hypercorn's own on random responses (the date header aside);
what hypercorn's protocol could not show here is tested over real sockets: pipelining, request
bodies in both framings, ``100 Continue``, an ``Upgrade`` request with a body, a failing app,
and a client that stops reading. The ``[limits]`` behaviours are tests/kernel/test_limits.py's,
run on this server (the default) and on hypercorn by ``make test`` (``make unit-hypercorn``
sets ``CORTEX_GATEWAY__SERVER`` and ``NEURON_SERVER`` for every daemon the tests start).
"""

from __future__ import annotations

import asyncio
import gc
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.types import Scope

from cortex_kernel.config.addresses import parse_listen
from cortex_kernel.config.schema import ConnectionLimits
from cortex_kernel.connection import GuardedH11
from cortex_kernel.http11 import HttpConnection
from cortex_kernel.http11_site import Site
from cortex_kernel.serving import Listener, _serve
from tests.daemons import free_port
from tests.kernel.test_send_path import wire_bytes

DATE = re.compile(rb"date: [^\r]*\r\n")
App = Callable[[Scope, Any, Any], Awaitable[None]]


class RecordingTransport(asyncio.Transport):
    """A transport that keeps what is written to it (a test double for a socket)."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []
        self.closed = asyncio.Event()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out.append(bytes(data))

    def write_eof(self) -> None:
        self.closed.set()

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        self.closed.set()

    def abort(self) -> None:
        self.closed.set()

    def is_closing(self) -> bool:
        return self.closed.is_set()

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def httptools_bytes(app: App, request: bytes) -> bytes:
    """What the httptools server writes answering ``request`` with ``app`` (its date line dropped)."""
    site = Site(app, {}, ConnectionLimits(), 10, "test")
    transport = RecordingTransport()
    connection = HttpConnection(site)
    connection.connection_made(transport)
    connection.data_received(request)
    for _ in range(200):
        await asyncio.sleep(0)
        if not site.tasks:
            break
    connection.connection_lost(None)
    return DATE.sub(b"", b"".join(transport.out), count=1)


statuses = st.sampled_from([200, 201, 204, 304, 404, 500])
connection_headers = st.sampled_from([[], [(b"connection", b"close")], [(b"connection", b"keep-alive")]])


@settings(max_examples=120, deadline=None)
@given(
    pieces=st.lists(st.binary(max_size=200), max_size=6),
    framing=st.sampled_from(["length", "chunked", "none"]),
    status=statuses,
    method=st.sampled_from([b"GET", b"HEAD", b"POST"]),
    version=st.sampled_from([b"1.1", b"1.0"]),
    extra=connection_headers,
    request_close=st.booleans(),
)
async def test_the_bytes_on_the_wire_are_hypercorns(
    pieces: list[bytes],
    framing: str,
    status: int,
    method: bytes,
    version: bytes,
    extra: list[tuple[bytes, bytes]],
    request_close: bool,
) -> None:
    """Any status, framing, method, version and Connection header: the same head and body bytes."""
    if status in (204, 304):
        pieces = []
    headers = [(b"content-type", b"text/plain"), *extra]
    if framing == "length":
        headers.append((b"content-length", str(sum(map(len, pieces))).encode()))
    elif framing == "chunked":
        headers.append((b"transfer-encoding", b"chunked"))

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for piece in pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    request = method + b" / HTTP/" + version + b"\r\nhost: x\r\ncontent-length: 0\r\n"
    request += b"connection: close\r\n\r\n" if request_close else b"\r\n"
    ours = await httptools_bytes(app, request)
    theirs = await wire_bytes(GuardedH11, app, request)
    assert ours == theirs


# -- over real sockets ---------------------------------------------------------------------------


async def echo_app(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with the method, path, query and the whole request body it read."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/fail":
        raise RuntimeError("the app failed (on purpose)")
    answer = b"%s %s %s %s" % (scope["method"].encode(), scope["path"].encode(), scope["query_string"], body)
    headers = [(b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    number = free_port()
    stop = asyncio.Event()
    address = parse_listen(f"127.0.0.1:{number}")
    server = asyncio.create_task(_serve(Listener(echo_app, address, "test", server="httptools"), 1.0, stop))
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", number)
        except OSError:
            await asyncio.sleep(0.05)
        else:
            writer.close()
            break
    yield number
    stop.set()
    await asyncio.wait_for(server, 30)


async def exchange(port: int, data: bytes, *, pause_after: bytes = b"") -> bytes:
    """Send ``data`` (pausing after ``pause_after`` until the server speaks) and read until closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if pause_after:
            head, _, data = data.partition(pause_after)
            writer.write(head + pause_after)
            first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        else:
            first = b""
        writer.write(data)
        return first + await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_pipelined_requests_are_answered_in_order(port: int) -> None:
    requests = b"".join(
        b"POST /%d HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\n%d" % (i, i) for i in range(5)
    )
    raw = await exchange(port, requests + b"GET /last HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    answers = re.findall(rb"\r\n\r\n(POST /\d  \d|GET /last  )", raw)
    assert answers == [b"POST /%d  %d" % (i, i) for i in range(5)] + [b"GET /last  "]


async def test_a_chunked_body_with_extensions_and_trailers_arrives_whole(port: int) -> None:
    body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n"
    raw = await exchange(
        port,
        b"POST /c?q=1 HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n" + body,
    )
    assert raw.endswith(b"POST /c q=1 hello world")


async def test_100_continue_is_sent_when_the_app_reads_the_body(port: int) -> None:
    request = b"POST /e HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 4\r\n"
    request += b"connection: close\r\n\r\n"
    raw = await exchange(port, request + b"body", pause_after=b"\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 100 \r\n")
    assert raw.endswith(b"POST /e  body")


async def test_an_upgrade_request_with_a_body_is_answered_in_http_1_1_with_its_body(port: int) -> None:
    """llhttp hands an Upgrade request's body over as the new protocol's; we serve none, so it is read."""
    request = (
        b"POST /u HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\n"
        b"http2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\ncontent-length: 5\r\n\r\nhello"
        b"GET /next HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    raw = await exchange(port, request)
    assert b"POST /u  hello" in raw
    assert raw.endswith(b"GET /next  ")


async def test_a_failing_app_gets_a_500_and_the_connection_closed(port: int) -> None:
    raw = await exchange(port, b"GET /fail HTTP/1.1\r\nhost: x\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 500 \r\ncontent-length: 0\r\n")
    assert b"connection: close\r\n" in raw.lower()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nhost: x\r\nhost: y\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nhost: x\r\n\r\n", 400),
        (b"GET /\r\n\r\n", 400),  # HTTP/0.9
        (b"GET / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 70000 + b"\r\n\r\n", 431),
        (b"GET /\xc3\xa9 HTTP/1.1\r\nhost: x\r\n\r\n", 400),
    ],
)
async def test_requests_hypercorn_refuses_are_refused(port: int, request_bytes: bytes, status: int) -> None:
    raw = await exchange(port, request_bytes)
    assert raw.startswith(b"HTTP/1.1 %d " % status)


async def test_a_bad_request_pipelined_behind_a_good_one_is_refused_after_its_answer(port: int) -> None:
    """llhttp reads ahead; the refusal still waits for the answer before it, as h11's would."""
    smuggled = (
        b"POST /b HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    raw = await exchange(port, b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nok" + smuggled)
    assert [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)] == [200, 400]
    assert b"POST /a  ok" in raw and b"bad_framing" in raw


async def test_a_closed_connection_is_freed_at_once_not_by_the_cycle_collector() -> None:
    """Its request parser calls back into it, and it holds the parser: a cycle that left every
    closed connection (and its parser's buffers) to the cycle collector, hundreds at a time."""
    site = Site(echo_app, {}, ConnectionLimits(), 10, "test")
    transport = RecordingTransport()
    connection = HttpConnection(site)
    connection.connection_made(transport)
    connection.data_received(b"GET /x HTTP/1.1\r\nhost: x\r\n\r\n")
    for _ in range(200):
        if b"GET /x" in b"".join(transport.out):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.01)  # the request's task ends
    connection.connection_lost(None)
    freed = weakref.ref(connection)
    gc.collect()
    gc.disable()
    try:
        del connection
        await asyncio.sleep(0)
        assert freed() is None, [type(r).__name__ for r in gc.get_referrers(freed())]
    finally:
        gc.enable()
