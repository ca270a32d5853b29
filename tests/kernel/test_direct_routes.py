"""Direct routes (cortex_kernel/direct.py) on the real httptools server, over loopback sockets.

A direct route answers a lane's requests from the server's protocol callbacks, with no ASGI
task; the lane is its fallback for everything the route declines or is never offered. These
tests build the app as the kernel does (``create_app`` with an ``AppPart`` whose ``direct``
pairs with its ``lanes``), so the route travels ``create_app`` -> ``LaneFront.direct`` ->
``Site.direct`` exactly as in production, and hold the server to the contract in
``cortex_kernel.direct``: what a route is offered and when, that its bytes on the wire are the
lane's for the same response, that it may hand a request back, and the splice calls
(``write``, ``on_writable``, ``on_lost``) on a direct response. A raw client socket drives each
exchange and h11 parses what comes back, so framing faults show as parse errors.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

import h11
import pytest
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from cortex_kernel.app import create_app
from cortex_kernel.config.addresses import parse_listen
from cortex_kernel.config.loader import LoadedConfig
from cortex_kernel.config.schema import ConnectionLimits, CortexConfig
from cortex_kernel.direct import MAX_DIRECT_BODY, DirectExchange
from cortex_kernel.kernel import AppPart, Kernel
from cortex_kernel.lanes import direct_routes
from cortex_kernel.plugins import PluginError, build_plugin_manager
from cortex_kernel.serving import Listener, _serve

DATE = re.compile(rb"date: [^\r]*\r\n", re.IGNORECASE)
DEADLINE_S = 5.0
ServerKind = Literal["hypercorn", "httptools"]
RawHeaders = list[tuple[bytes, bytes]]


# -- the lane and the direct route under test ----------------------------------------------------


def echo(body: bytes) -> Response:
    """The lane's default answer: the body it read, marked as the lane's."""
    return Response(body, 200, headers={"x-served-by": "lane"})


class Lane:
    """A lane (an ASGI app) that records every request it serves and answers with ``respond``.

    It reads the whole body through Starlette's ``Request``, as the gateway's relay lane does,
    so a request handed to it after a route held it shows whether its body survived.
    """

    def __init__(self, respond: Callable[[bytes], Response] = echo) -> None:
        self.respond = respond
        self.calls: list[tuple[str, str, bytes]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await Request(scope, receive).body()
        self.calls.append((scope["method"], scope["path"], body))
        await self.respond(body)(scope, receive, send)


Answer = Callable[[DirectExchange], None]


def answer_whole(status: int = 200, headers: RawHeaders | None = None) -> Answer:
    """An answer that echoes the request body as one whole response with a Content-Length."""

    def answer(exchange: DirectExchange) -> None:
        body = exchange.request_body()
        head = headers if headers is not None else [(b"x-served-by", b"route")]
        exchange.start_response(status, [*head, (b"content-length", b"%d" % len(body))])
        exchange.finish_response(body)

    return answer


@dataclass
class Route:
    """A direct route that records what it was offered and, when ``decide`` says take, answers
    from a later loop callback (as a real route answers from its upstream's callbacks)."""

    answer: Answer = field(default_factory=answer_whole)
    decide: Callable[[bytes], bool] = lambda body: True
    fail: bool = False
    offered: list[tuple[str, str, bytes]] = field(default_factory=list)
    exchanges: list[DirectExchange] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def __call__(self, exchange: DirectExchange) -> bool:
        scope = exchange.scope
        body = exchange.request_body()
        self.offered.append((scope["method"], scope["path"], body))
        self.events.append(f"offered {body.decode(errors='replace')}")
        if self.fail:
            raise RuntimeError("the direct route failed (on purpose)")
        if not self.decide(body):
            return False
        self.exchanges.append(exchange)
        asyncio.get_running_loop().call_soon(self._answer, exchange, body)
        return True

    def _answer(self, exchange: DirectExchange, body: bytes) -> None:
        self.events.append(f"answering {body.decode(errors='replace')}")
        self.answer(exchange)


def kernel() -> Kernel:
    """A gateway kernel with no plugins: ``create_app`` is given its parts directly."""
    pm = build_plugin_manager(load_entrypoints=False)
    return Kernel(role="gateway", config=LoadedConfig("cortex", CortexConfig(), None, {}), pm=pm)


def direct_app(route: Route, lane: Lane, *, more: list[AppPart] | None = None) -> ASGIApp:
    """The app a part with a lane and its direct route on ``POST /echo`` builds, plus lanes with
    no route (``PUT /echo``, ``POST /other``) to show where the route is not offered."""
    part = AppPart(
        name="relay",
        lanes={("POST", "/echo"): lane, ("PUT", "/echo"): lane, ("POST", "/other"): lane},
        direct={("POST", "/echo"): route},
    )
    return create_app(kernel(), [part, *(more or [])])


# -- the server and a raw client -----------------------------------------------------------------


@asynccontextmanager
async def served(
    app: ASGIApp, *, server: ServerKind = "httptools", limits: ConnectionLimits | None = None
) -> AsyncIterator[int]:
    """Serve ``app`` with ``_serve`` on a socket bound here, so a client can connect at once
    (the backlog holds it until the server accepts); stopped, and drained, on the way out."""
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    listener = Listener(
        app,
        parse_listen(f"127.0.0.1:{port}"),
        "direct-test",
        limits=limits or ConnectionLimits(),
        sock=sock,
        server=server,
    )
    stop = asyncio.Event()
    serving = asyncio.create_task(_serve(listener, 0.5, stop))
    try:
        yield port
    finally:
        stop.set()
        await asyncio.wait_for(serving, DEADLINE_S)
        sock.close()


@dataclass
class Reply:
    """One response as h11 parsed it, and its bytes as they came off the wire."""

    status: int
    headers: RawHeaders
    body: bytes
    raw: bytes
    informational: list[int]

    def without_date(self) -> tuple[int, RawHeaders, bytes]:
        return self.status, [(n, v) for n, v in self.headers if n != b"date"], self.body


class Client:
    """A raw client socket; what it reads is kept until :meth:`reply` parses it with h11."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.pending = bytearray()
        self.eof = False

    @classmethod
    async def connect(cls, port: int, *, rcvbuf: int | None = None) -> Client:
        sock = socket.socket()
        sock.setblocking(False)
        if rcvbuf is not None:  # before the connect, so the advertised window is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), DEADLINE_S
            )
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    async def send(self, data: bytes) -> None:
        await asyncio.wait_for(self.loop.sock_sendall(self.sock, data), DEADLINE_S)

    async def read_some(self) -> bytes:
        """Read what the server sent next (``b""`` at its EOF) and keep it for :meth:`reply`."""
        data = await asyncio.wait_for(self.loop.sock_recv(self.sock, 1 << 20), DEADLINE_S)
        if not data:
            self.eof = True
        self.pending += data
        return data

    async def read_until(self, marker: bytes) -> None:
        while marker not in self.pending:
            if not await self.read_some():
                raise AssertionError(f"the server closed before sending {marker!r}: {bytes(self.pending)!r}")

    async def read_to_eof(self) -> bytes:
        while await self.read_some():
            pass
        return bytes(self.pending)

    async def reply(self, method: str = "POST") -> Reply:
        """The next response on the connection, parsed by a fresh h11 client (one per response,
        since h11 will not pipeline); what follows it stays pending for the next call."""
        parser = h11.Connection(h11.CLIENT)
        parser.send(h11.Request(method=method, target="/", headers=[("host", "x"), ("content-length", "0")]))
        parser.send(h11.EndOfMessage())
        fed = bytearray(self.pending)
        self.pending.clear()
        if fed or self.eof:  # h11 reads b"" as the server's EOF
            parser.receive_data(bytes(fed))
        status, headers, body, informational = 0, [], bytearray(), []
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(self.loop.sock_recv(self.sock, 1 << 20), DEADLINE_S)
                self.eof = not data
                fed += data
                parser.receive_data(data)
            elif isinstance(event, h11.InformationalResponse):
                informational.append(event.status_code)
            elif isinstance(event, h11.Response):
                status, headers = event.status_code, [(name, value) for name, value in event.headers]
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"the connection ended before the response did: {event!r}")
        trailing, closed = parser.trailing_data
        self.pending += trailing
        self.eof = self.eof or closed
        raw = bytes(fed[: len(fed) - len(trailing)])
        return Reply(status, headers, bytes(body), raw, informational)

    def close(self) -> None:
        self.sock.close()


@asynccontextmanager
async def client(port: int, *, rcvbuf: int | None = None) -> AsyncIterator[Client]:
    connection = await Client.connect(port, rcvbuf=rcvbuf)
    try:
        yield connection
    finally:
        connection.close()


def post(body: bytes, path: bytes = b"/echo", *, method: bytes = b"POST", close: bool = False) -> bytes:
    """A request with a Content-Length body (``Connection: close`` when ``close``)."""
    head = b"%s %s HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n" % (method, path, len(body))
    return head + (b"connection: close\r\n" if close else b"") + b"\r\n" + body


async def until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` (each loop turn, then every few ms) until true, or fail after the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.005)


# -- 1. the route's bytes are the lane's ---------------------------------------------------------

HEADERS = [(b"content-type", b"text/plain"), (b"x-answer", b"same")]


async def test_a_taken_request_is_answered_by_the_route_with_the_lanes_bytes() -> None:
    """A whole response with a Content-Length: the route's, byte for byte (the date aside), is
    the one the lane sends for the same status, headers and body, and the lane never runs."""
    body = b"the same answer, whoever gives it"
    headers = [*HEADERS, (b"content-length", b"%d" % len(body))]
    lane = Lane(lambda _: Response(body, 201, headers={n.decode(): v.decode() for n, v in headers}))

    def whole(exchange: DirectExchange) -> None:
        exchange.start_response(201, headers)
        exchange.finish_response(body)

    route = Route(answer=whole)
    async with served(direct_app(route, lane)) as port, client(port) as conn:
        await conn.send(post(b"first"))
        direct = await conn.reply()
        assert route.offered == [("POST", "/echo", b"first")]
        assert lane.calls == []
        route.decide = lambda _: False
        await conn.send(post(b"second"))
        laned = await conn.reply()
        assert lane.calls == [("POST", "/echo", b"second")]
    assert direct.without_date() == laned.without_date() == (201, [*headers], body)
    assert DATE.sub(b"", direct.raw) == DATE.sub(b"", laned.raw)


async def test_a_streamed_response_from_the_route_is_framed_as_the_lanes() -> None:
    """A chunked response written with ``write()`` pieces then ``finish_response()``: the same
    bytes as the lane's streamed response, and h11 decodes the same body."""
    pieces = [b"data: one\n\n", b"data: two\n\n", b"x" * 5000, b"data: [DONE]\n\n"]

    async def stream() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    def streamed(exchange: DirectExchange) -> None:
        exchange.start_response(200, HEADERS)
        for piece in pieces:
            assert exchange.write(piece)
        exchange.finish_response()

    lane = Lane(
        lambda _: StreamingResponse(stream(), 200, headers={n.decode(): v.decode() for n, v in HEADERS})
    )
    route = Route(answer=streamed)
    async with served(direct_app(route, lane)) as port, client(port) as conn:
        await conn.send(post(b"first"))
        direct = await conn.reply()
        assert lane.calls == []
        route.decide = lambda _: False
        await conn.send(post(b"second"))
        laned = await conn.reply()
        assert len(lane.calls) == 1
    assert (b"transfer-encoding", b"chunked") in direct.headers
    assert direct.without_date() == laned.without_date()
    assert direct.body == b"".join(pieces)
    assert DATE.sub(b"", direct.raw) == DATE.sub(b"", laned.raw)


# -- 2-4. the lane serves what the route declines, hands back, or fails on -----------------------


async def test_a_declined_request_is_served_by_the_lane_with_its_whole_body() -> None:
    body = bytes(range(256)) * 64
    route = Route(decide=lambda _: False)
    lane = Lane()
    async with served(direct_app(route, lane)) as port, client(port) as conn:
        await conn.send(post(body))
        reply = await conn.reply()
    assert route.offered == [("POST", "/echo", body)]
    assert lane.calls == [("POST", "/echo", body)]
    assert (reply.status, reply.body) == (200, body)
    assert (b"x-served-by", b"lane") in reply.headers


async def test_to_app_after_taking_hands_the_request_and_its_body_to_the_lane() -> None:
    """A route that took a request and then found it cannot serve it (its first attempt failed
    before any byte came back) hands it back from a later callback; the lane reads the body."""
    route = Route(answer=lambda exchange: exchange.to_app())
    lane = Lane()
    async with served(direct_app(route, lane)) as port, client(port) as conn:
        await conn.send(post(b"handed back"))
        reply = await conn.reply()
        await conn.send(post(b"again"))  # the connection goes on serving after the hand-back
        again = await conn.reply()
    assert route.offered == [("POST", "/echo", b"handed back"), ("POST", "/echo", b"again")]
    assert lane.calls == [("POST", "/echo", b"handed back"), ("POST", "/echo", b"again")]
    assert (reply.status, reply.body, again.body) == (200, b"handed back", b"again")


async def test_a_route_that_raises_is_logged_and_the_lane_serves(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="cortex_kernel.http11")
    route = Route(fail=True)
    lane = Lane()
    async with served(direct_app(route, lane)) as port, client(port) as conn:
        await conn.send(post(b"payload"))
        reply = await conn.reply()
    assert route.offered == [("POST", "/echo", b"payload")]
    assert lane.calls == [("POST", "/echo", b"payload")]
    assert (reply.status, reply.body) == (200, b"payload")
    failures = [r for r in caplog.records if "the direct route for /echo failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].levelno == logging.ERROR
    assert failures[0].exc_info is not None and isinstance(failures[0].exc_info[1], RuntimeError)


async def test_a_route_that_raises_after_beginning_its_response_closes_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once a response has begun the lane cannot serve the request: the begun head goes out and
    the connection is closed, so the client sees a cut response, never a second one."""
    caplog.set_level(logging.ERROR, logger="cortex_kernel.http11")

    class BeginsThenFails(Route):
        def __call__(self, exchange: DirectExchange) -> bool:
            self.offered.append(("POST", "/echo", exchange.request_body()))
            exchange.start_response(200, [(b"content-length", b"10")])
            raise RuntimeError("failed after starting (on purpose)")

    route = BeginsThenFails()
    lane = Lane()
    async with served(direct_app(route, lane)) as port, client(port) as conn:
        await conn.send(post(b"payload"))
        raw = await conn.read_to_eof()
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert raw.endswith(b"\r\n\r\n")  # the head alone, then the close
    assert lane.calls == []
    assert any("the direct route for /echo failed" in r.getMessage() for r in caplog.records)


# -- 5. what is never offered --------------------------------------------------------------------

CHUNKED = (
    b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
)
BIG = b"b" * (MAX_DIRECT_BODY + 1)


@pytest.mark.parametrize(
    ("request_bytes", "method", "path", "body"),
    [
        pytest.param(CHUNKED, "POST", "/echo", b"hello world", id="chunked body"),
        pytest.param(post(BIG), "POST", "/echo", BIG, id="body over MAX_DIRECT_BODY"),
        pytest.param(post(b"other", b"/other"), "POST", "/other", b"other", id="another path"),
        pytest.param(post(b"put", method=b"PUT"), "PUT", "/echo", b"put", id="another method"),
    ],
)
async def test_requests_the_route_is_not_offered_go_to_the_lane(
    request_bytes: bytes, method: str, path: str, body: bytes
) -> None:
    route = Route()
    lane = Lane()
    async with served(direct_app(route, lane)) as port, client(port) as conn:
        await conn.send(request_bytes)
        reply = await conn.reply()
    assert route.offered == []
    assert lane.calls == [(method, path, body)]
    assert (reply.status, reply.body) == (200, body)


async def test_a_request_awaiting_100_continue_is_not_offered() -> None:
    """The route could not send the ``100 Continue`` the client waits for: the lane serves it,
    and the client's body arrives only after the server invited it."""
    route = Route()
    lane = Lane()
    head = b"POST /echo HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 4\r\n\r\n"
    async with served(direct_app(route, lane)) as port, client(port) as conn:
        await conn.send(head)
        await conn.read_until(b"\r\n\r\n")
        assert conn.pending.startswith(b"HTTP/1.1 100 ")
        await conn.send(b"body")
        reply = await conn.reply()
    assert reply.informational == [100]
    assert route.offered == []
    assert lane.calls == [("POST", "/echo", b"body")]
    assert (reply.status, reply.body) == (200, b"body")


async def test_a_body_of_exactly_max_direct_body_is_still_offered() -> None:
    """The bound is inclusive: the largest body the server buffers for a route is offered whole."""
    body = b"m" * MAX_DIRECT_BODY
    route = Route()
    lane = Lane()
    async with served(direct_app(route, lane)) as port, client(port) as conn:
        await conn.send(post(body))
        reply = await conn.reply()
    assert route.offered == [("POST", "/echo", body)]
    assert lane.calls == []
    assert reply.body == body


# -- 6-7. when, and in which order, requests are offered -----------------------------------------


async def test_a_body_sent_in_pieces_is_offered_once_and_only_when_complete() -> None:
    """The route never sees a partial upload: the pauses between pieces leave the server time
    to read each (a short wait, since "not offered yet" cannot be polled for)."""
    route = Route()
    lane = Lane()
    pieces = [b"first piece, ", b"second piece, ", b"last piece"]
    body = b"".join(pieces)
    request = post(body)
    head = request[: len(request) - len(body)]
    async with served(direct_app(route, lane)) as port, client(port) as conn:
        await conn.send(head)
        for piece in pieces[:-1]:
            await asyncio.sleep(0.05)
            assert route.offered == []
            await conn.send(piece)
        await asyncio.sleep(0.05)
        assert route.offered == []
        await conn.send(pieces[-1])
        reply = await conn.reply()
    assert route.offered == [("POST", "/echo", body)]
    assert lane.calls == []
    assert reply.body == body


async def test_pipelined_requests_are_offered_and_answered_in_order() -> None:
    """Two requests in one write: the second is offered only once the first is answered."""
    route = Route()
    lane = Lane()
    async with served(direct_app(route, lane)) as port, client(port) as conn:
        await conn.send(post(b"one") + post(b"two"))
        first = await conn.reply()
        second = await conn.reply()
    assert [first.body, second.body] == [b"one", b"two"]
    assert route.offered == [("POST", "/echo", b"one"), ("POST", "/echo", b"two")]
    assert route.events == ["offered one", "answering one", "offered two", "answering two"]
    assert lane.calls == []


async def test_a_route_may_answer_within_the_offer_itself() -> None:
    """An answer known at once (a refusal, say) is written from inside the offer; the requests
    pipelined behind it are still offered, and answered, each in turn."""

    class AtOnce(Route):
        def __call__(self, exchange: DirectExchange) -> bool:
            body = exchange.request_body()
            self.offered.append((exchange.scope["method"], exchange.scope["path"], body))
            self.answer(exchange)
            return True

    route = AtOnce()
    lane = Lane()
    async with served(direct_app(route, lane)) as port, client(port) as conn:
        await conn.send(post(b"one") + post(b"two") + post(b"three"))
        replies = [await conn.reply() for _ in range(3)]
    assert [reply.body for reply in replies] == [b"one", b"two", b"three"]
    assert [body for _, _, body in route.offered] == [b"one", b"two", b"three"]
    assert lane.calls == []


async def test_a_pipelined_request_whose_body_arrives_late_is_offered_when_it_is_complete() -> None:
    """The second request's head came with the first, its body only after the first was
    answered: it waits its turn, then for its body, and is offered whole."""
    route = Route()
    lane = Lane()
    second = post(b"second body")
    async with served(direct_app(route, lane)) as port, client(port) as conn:
        await conn.send(post(b"first") + second[:-6])
        first = await conn.reply()
        await asyncio.sleep(0.05)  # the server has read what it was sent of the second
        assert [body for _, _, body in route.offered] == [b"first"]
        await conn.send(second[-6:])
        later = await conn.reply()
    assert (first.body, later.body) == (b"first", b"second body")
    assert [body for _, _, body in route.offered] == [b"first", b"second body"]
    assert lane.calls == []


async def test_pipelined_requests_declined_then_taken_are_answered_in_order() -> None:
    """The lane's answer to the first goes out before the route is offered the second."""
    route = Route(decide=lambda body: body != b"one")
    lane = Lane()
    async with served(direct_app(route, lane)) as port, client(port) as conn:
        await conn.send(post(b"one") + post(b"two", close=True))
        first = await conn.reply()
        second = await conn.reply()
        assert await conn.read_to_eof() == b""  # the second asked to close: nothing follows
    assert (first.body, dict(first.headers)[b"x-served-by"]) == (b"one", b"lane")
    assert (second.body, dict(second.headers)[b"x-served-by"]) == (b"two", b"route")
    assert route.offered == [("POST", "/echo", b"one"), ("POST", "/echo", b"two")]
    assert lane.calls == [("POST", "/echo", b"one")]


# -- 8-9. the splice calls on a direct response --------------------------------------------------


async def test_a_client_leaving_mid_stream_fires_on_lost_exactly_once() -> None:
    lost: list[int] = []

    def begin_stream(exchange: DirectExchange) -> None:
        exchange.start_response(200, HEADERS)
        exchange.on_lost(lambda: lost.append(1))
        assert exchange.write(b"first piece")

    route = Route(answer=begin_stream)
    async with served(direct_app(route, Lane())) as port:
        async with client(port) as conn:
            await conn.send(post(b"stream"))
            await conn.read_until(b"first piece")
        await until(lambda: len(lost) == 1, "on_lost fires")
        (exchange,) = route.exchanges
        assert exchange.write(b"after the client left")  # dropped, never raised
        exchange.finish_response()  # dropped too
        await asyncio.sleep(0.05)  # a second call would come from the same connection_lost
    assert lost == [1]


async def test_write_backpressure_returns_false_then_on_writable_fires_when_the_client_reads() -> None:
    """A client that does not read fills the socket and the transport: ``write()`` says so
    (false), ``on_writable`` waits for the client to read, and then the response ends whole."""
    piece = bytes(range(256)) * 256  # 64 KiB
    most = 512  # 32 MiB: far past any loopback buffering, so a write that never says false fails
    written: list[bool] = []
    writable: list[int] = []

    def flood(exchange: DirectExchange) -> None:
        exchange.start_response(200, HEADERS)
        while len(written) < most:
            written.append(exchange.write(piece))
            if not written[-1]:
                break

        def resumed() -> None:
            writable.append(1)
            exchange.finish_response()

        exchange.on_writable(resumed)

    route = Route(answer=flood)
    async with served(direct_app(route, Lane())) as port, client(port, rcvbuf=4096) as conn:
        await conn.send(post(b"flood"))
        await until(lambda: bool(written) and not written[-1], "write() returns false")
        await asyncio.sleep(0.02)
        assert writable == []  # nothing read yet: the client is still slow
        reply = await conn.reply()
    assert writable == [1]
    assert written[:-1] == [True] * (len(written) - 1)
    assert reply.status == 200
    assert reply.body == piece * len(written)


# -- 10. which direct routes create_app keeps ----------------------------------------------------


class Watching:
    """Middleware that says it must see ``/echo`` (a console capture, say)."""

    def __init__(self, app: ASGIApp, seen: list[str]) -> None:
        self.app, self.seen = app, seen

    @staticmethod
    def watches(path: str) -> bool:
        return path == "/echo"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append(f"{scope['method']} {scope['path']}")
        await self.app(scope, receive, send)


class Unconcerned(Watching):
    """Middleware that says it has no business with ``/echo``."""

    @staticmethod
    def watches(path: str) -> bool:
        return False


def test_a_direct_route_without_a_lane_of_its_own_part_stops_start_up() -> None:
    """The lane must be the route's own part's: another part's lane on the same key will not do."""
    route = Route()
    owner = AppPart(name="lanes", lanes={("POST", "/echo"): Lane()})
    stray = AppPart(name="stray", direct={("POST", "/echo"): route})
    with pytest.raises(PluginError, match=r"'stray' has a direct route for POST /echo but no lane there"):
        create_app(kernel(), [owner, stray])


def test_a_direct_route_with_no_lanes_at_all_stops_start_up() -> None:
    """Where no part has any lane, a direct route pairs with nothing either: the same error."""
    stray = AppPart(name="stray", direct={("POST", "/echo"): Route()})
    with pytest.raises(PluginError, match=r"'stray' has a direct route for POST /echo but no lane there"):
        create_app(kernel(), [stray])


def test_a_direct_route_is_dropped_where_another_parts_middleware_watches_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cortex_kernel.app")
    route = Route()
    console = AppPart(name="console", middleware=[Middleware(Watching, seen=[])])
    app = direct_app(route, Lane(), more=[console])
    assert direct_routes(app) == {}
    assert any(
        r.levelno == logging.INFO
        and "POST /echo is served by its lane only: Watching watches it" in r.getMessage()
        for r in caplog.records
    )


def test_a_direct_route_is_kept_under_its_own_parts_middleware_or_one_that_does_not_watch() -> None:
    route = Route()
    lane = Lane()
    own = AppPart(
        name="relay",
        lanes={("POST", "/echo"): lane},
        direct={("POST", "/echo"): route},
        middleware=[Middleware(Watching, seen=[])],
    )
    other = AppPart(name="other", middleware=[Middleware(Unconcerned, seen=[])])
    assert direct_routes(create_app(kernel(), [own, other])) == {("POST", "/echo"): route}


async def test_a_dropped_direct_route_is_never_offered_and_the_watcher_sees_the_request() -> None:
    seen: list[str] = []
    route = Route()
    lane = Lane()
    console = AppPart(name="console", middleware=[Middleware(Watching, seen=seen)])
    async with served(direct_app(route, lane, more=[console])) as port, client(port) as conn:
        await conn.send(post(b"watched"))
        reply = await conn.reply()
    assert reply.body == b"watched"
    assert route.offered == []
    assert lane.calls == [("POST", "/echo", b"watched")]
    assert seen == ["POST /echo"]


# -- 11-12. hypercorn, and the body timeout ------------------------------------------------------


async def test_hypercorn_never_calls_the_route_and_the_lane_answers() -> None:
    route = Route()
    lane = Lane()
    async with served(direct_app(route, lane), server="hypercorn") as port, client(port) as conn:
        await conn.send(post(b"via hypercorn"))
        reply = await conn.reply()
    assert (reply.status, reply.body) == (200, b"via hypercorn")
    assert route.offered == []
    assert lane.calls == [("POST", "/echo", b"via hypercorn")]


async def test_the_body_timeout_applies_to_a_request_held_for_its_route() -> None:
    """A held request has no task reading its body, but its body clock still runs: a body that
    never completes gets a 408 and the connection ends, and the route is never offered it."""
    route = Route()
    lane = Lane()
    limits = ConnectionLimits(body_timeout_s=0.5)
    async with served(direct_app(route, lane), limits=limits) as port, client(port) as conn:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await conn.send(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc")
        raw = await conn.read_to_eof()
        waited = loop.time() - started
    assert raw.startswith(b"HTTP/1.1 408 ")
    assert 0.4 <= waited < 3.0
    assert route.offered == []
    assert lane.calls == []
