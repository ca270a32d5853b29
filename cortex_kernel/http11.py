"""One client connection on the httptools server: HTTP/1.1 parsed by llhttp, held to ``[limits]``.

The second server protocol (``server = "httptools"``, issue #17): an ``asyncio.Protocol`` (so it
runs on asyncio's loop and uvloop alike) that parses requests with llhttp through httptools, runs
each on the ASGI app in its own task (:class:`~cortex_kernel.http11_exchange.Exchange`) and keeps
every bound :mod:`cortex_kernel.connection` puts on hypercorn's protocol:

- a head has ``header_timeout_s`` from its first byte (from the connect, on a new connection), a
  body ``body_timeout_s`` from the end of its head; one that misses it is answered 408 and the
  connection closed, and a connection that never sent a byte is closed without a word;
- an idle kept-alive connection is closed after ``keep_alive_timeout_s``; EOF closes at once;
- ``Content-Length`` with ``Transfer-Encoding``, chunked HTTP/1.0, any transfer coding but one
  ``chunked``, a head over 64 KiB (431) and whatever llhttp finds malformed are refused and the
  connection closed; ``PRI * HTTP/2.0`` gets a 505 and an ``Upgrade`` header is ignored;
- an answer given before its request's body arrived is followed by a linger (our side shut, what
  the client still sends read and dropped for up to ``LINGER_S``), as after any refusal, so the
  client reads the answer instead of a reset.

No deadline runs while a response is being sent. Flow control both ways: a client that stops
reading pauses the app's ``send``, and an app that does not read the body stops the reading (its
body clock stopped meanwhile). Pipelined requests are answered in order, one app at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

import httptools

from cortex_kernel.connection import LINGER_S
from cortex_kernel.direct import MAX_DIRECT_BODY
from cortex_kernel.http11_exchange import BODY_HIGH_WATER, Exchange
from cortex_kernel.http_edge import (
    Refused,
    both_framings,
    chunked_on_http10,
    head_too_large,
    http2_preface,
    socket_address,
    timed_out,
    unparsable,
)

if TYPE_CHECKING:
    from cortex_kernel.http11_site import Site

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024
ASGI = {"spec_version": "2.1", "version": "3.0"}


class StopParsing(Exception):
    """Bytes after a request that closes the connection: not parsed, not answered."""


class HttpConnection(asyncio.Protocol):
    """Serve one accepted connection until either side closes it."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.loop = site.loop
        self.transport: asyncio.Transport = cast(asyncio.Transport, None)
        # It calls back into this connection (bound methods of it): dropped when the connection
        # is lost, so that a closed connection is freed at once, not by the cycle collector.
        self.parser: httptools.HttpRequestParser | None = self._new_parser()
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        self.parsing: Exchange | None = None  # the request whose body is being read
        self.running: Exchange | None = None  # the request the app is answering
        self.queue: deque[Exchange] = deque()  # pipelined requests waiting for their turn
        self.refusal: Refused | None = None  # a later request's, sent when the running one ends
        self.served = 0
        self.received = False
        self.finished = False  # nothing more is parsed: refused, lingering, or past the last request
        self.lingering = False
        self.closed = False
        self.read_paused = False
        self.write_paused = False
        self.write_waiter: asyncio.Future[None] | None = None
        self.writable_callback: Callable[[], None] | None = None  # a spliced body's (Exchange.on_writable)
        # Deadlines (loop time); one timer, moved earlier when needed and re-armed when it fires early.
        self.connected_at = self.loop.time()
        self.head_since: float | None = None
        self.idle_since = 0.0
        self.body_deadline = 0.0
        self.paused_at: float | None = None
        self.linger_until = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        # The head being parsed.
        self.head_partial = False
        self.head_span = 0
        self.head_fields = 0
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.content_length = 0
        self.has_length = False
        self.chunked = False
        self.hosts = 0
        self.expect = False
        self.upgrade_body = False  # an Upgrade request with a body, which llhttp would not read
        self.synthetic = False  # parsing the stand-in head that resumes such a body

    def _new_parser(self) -> httptools.HttpRequestParser:
        parser = httptools.HttpRequestParser(self)
        # A request with "Connection: close" may be followed by bytes we simply never read (before
        # httptools 0.6.3 llhttp refuses them instead, once the answer to that request is out).
        with contextlib.suppress(AttributeError):
            parser.set_dangerous_leniencies(lenient_data_after_close=True)
        return parser

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        site = self.site
        if len(site.connections) >= site.cap or site.terminated:
            self.closed = True
            self.transport.abort()  # refused: no parser work, no buffer, no timer
            return
        site.connections.add(self)
        self.client = socket_address(transport.get_extra_info("peername"))
        self.server = socket_address(transport.get_extra_info("sockname"))
        self._rearm()

    def data_received(self, data: bytes) -> None:
        if self.finished:
            return  # lingering, or past the last request: read only to be dropped
        self.received = True
        if self.head_partial:
            self.head_span += len(data)
        self._feed(data)
        if not self.finished:
            if self.head_partial and max(self.head_span, self.head_fields) > MAX_HEAD:
                self._refuse(head_too_large())
            else:
                self._rearm()

    def eof_received(self) -> bool | None:
        return None  # the peer is done: close at once (the transport does), whatever was in flight

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        site = self.site
        if self in site.connections:
            site.connections.discard(self)
            site.changed.set()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for exchange in (self.running, self.parsing, *self.queue):
            if exchange is not None:
                exchange.lost()
        self.queue.clear()
        self.parser = None
        self._release_writers()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._release_writers()

    def _release_writers(self) -> None:
        waiter = self.write_waiter
        if waiter is not None:
            self.write_waiter = None
            if not waiter.done():
                waiter.set_result(None)
        callback = self.writable_callback
        if callback is not None:
            self.writable_callback = None
            callback()

    # -- parsing -------------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:  # lost: nothing more is read
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._past_upgrade(data[int(upgrade.args[0]) :])
        except httptools.HttpParserCallbackError as error:
            cause = error.__context__
            if isinstance(cause, Refused):
                self._refuse(cause)
            elif not isinstance(cause, StopParsing):
                log.error("%s: the request parser failed", self.site.name, exc_info=cause)
                self._refuse(unparsable())
        except httptools.HttpParserError as error:
            self._refuse(self._parse_refusal(error, parser))

    @staticmethod
    def _parse_refusal(error: httptools.HttpParserError, parser: httptools.HttpRequestParser) -> Refused:
        reason = str(error)
        try:
            method = parser.get_method()
        except httptools.HttpParserError:
            method = b""
        if method == b"PRI":
            return http2_preface()
        if "Content-Length" in reason and "Transfer-Encoding" in reason:
            return both_framings()
        return Refused(400, f"malformed HTTP request: {reason}", "bad_request")

    def _past_upgrade(self, rest: bytes) -> None:
        """Go on after an ``Upgrade`` (or ``CONNECT``) request, answered as plain HTTP/1.1.

        llhttp stops at such a request and would hand its body over as the new protocol's
        bytes; we serve no other protocol, so a fresh parser takes the rest. Where the request
        has a body, the fresh parser first reads a stand-in head that carries its framing, so
        llhttp frames the body exactly as it would any other.
        """
        parser = self.parser = self._new_parser()
        if self.synthetic:
            framing = (
                b"transfer-encoding: chunked" if self.chunked else b"content-length: %d" % self.content_length
            )
            try:
                parser.feed_data(b"POST / HTTP/1.1\r\nhost: x\r\n" + framing + b"\r\n\r\n")
            except httptools.HttpParserError:  # cannot happen: the stand-in is well formed
                self._refuse(unparsable())
                return
        if rest and not self.finished:
            self._feed(rest)

    def on_message_begin(self) -> None:
        if self.synthetic:
            return
        if self.finished:
            raise StopParsing
        self.head_partial = True
        self.head_span = self.head_fields = 0
        self.url = b""
        self.headers = []
        self.content_length = self.hosts = 0
        self.has_length = self.chunked = self.expect = False
        if self.running is None and not self.queue:
            self.head_since = self.connected_at if self.served == 0 else self.loop.time()
        else:
            self.head_since = None  # its clock starts when the responses before it are done

    def on_url(self, url: bytes) -> None:
        if self.synthetic:
            return
        self.url += url
        self.head_fields += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.synthetic:
            return
        name = name.lower()
        value = value.strip()
        self.head_fields += len(name) + len(value) + 4
        if self.head_fields > MAX_HEAD:
            raise head_too_large()
        if name == b"transfer-encoding":
            # llhttp accepts a coding list ending in chunked; hypercorn's h11 only "chunked" (once).
            if self.has_length:
                raise both_framings()
            if self.chunked or value.lower() != b"chunked":
                raise Refused(400, "the only transfer coding accepted is one chunked", "bad_framing")
            self.chunked = True
        elif name == b"content-length":
            self.has_length = True
            if value.isdigit():
                self.content_length = int(value)
        elif name == b"host":
            self.hosts += 1
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.synthetic:
            self.synthetic = False
            return
        parser = self.parser
        assert parser is not None  # it is the one calling
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            # A 400, as h11 answers HTTP/0.9; the 505 is the HTTP/2 preface's (llhttp reads a GET's
            # "HTTP/2.0" as a version, which h11 would not serve either).
            raise Refused(400, f"HTTP/{version} is not served here; use HTTP/1.1", "bad_request")
        if self.chunked and version == "1.0":
            raise chunked_on_http10()
        if version == "1.1" and self.hosts != 1:
            raise Refused(400, "an HTTP/1.1 request must carry exactly one Host header", "bad_request")
        raw_path, _, query = self.url.partition(b"?")
        try:
            path = raw_path.decode("ascii")
        except UnicodeDecodeError:
            raise Refused(400, "the request target is not ASCII", "bad_request") from None
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": ASGI.copy(),
            "http_version": version,
            "method": parser.get_method().decode("ascii"),
            "scheme": "http",
            "path": unquote(path) if "%" in path else path,
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": self.headers,
            "client": self.client,
            "server": self.server,
            "state": self.site.state.copy(),
            "extensions": {},
        }
        exchange = Exchange(
            self,
            scope,
            keep_alive=version == "1.1" and parser.should_keep_alive(),
            expect_continue=self.expect,
        )
        self.head_partial = False
        self.parsing = exchange
        self.upgrade_body = parser.should_upgrade() and (self.chunked or self.content_length > 0)
        # Only a small body of known length, with no 100-continue awaited, waits for a direct route.
        direct = self.site.direct
        if direct and self.content_length <= MAX_DIRECT_BODY and not (self.chunked or self.expect):
            exchange.direct = None if self.upgrade_body else direct.get((scope["method"], scope["path"]))
        if self.running is None and not self.queue:
            self._start(exchange)
        else:
            self.queue.append(exchange)
            self._update_reading()

    def on_body(self, body: bytes) -> None:
        exchange = self.parsing
        if exchange is None:
            return
        exchange.feed(body)
        if exchange is self.running and len(exchange.body) > BODY_HIGH_WATER:
            self._update_reading()

    def on_message_complete(self) -> None:
        if self.upgrade_body:
            self.upgrade_body = False
            self.synthetic = True  # the body comes through the stand-in head (_past_upgrade)
            return
        exchange = self.parsing
        if exchange is None:
            return
        self.parsing = None
        exchange.end()
        if not exchange.keep_alive:
            self.finished = True
        if exchange.direct is not None and exchange is self.running:
            self._offer(exchange)  # held for its direct route until now (_start)

    # -- the requests' turns -------------------------------------------------------------------

    def _start(self, exchange: Exchange) -> None:
        self.running = exchange
        self.body_deadline = self.loop.time() + self.site.limits.body_timeout_s
        if exchange.direct is not None:
            if exchange.body_done:
                self._offer(exchange)
            return  # held: offered when its body is in (on_message_complete)
        self.site.track(self.loop.create_task(exchange.run()))

    def _offer(self, exchange: Exchange) -> None:
        """Offer a whole request to its direct route (:mod:`cortex_kernel.direct`); the app
        serves it if the route declines, or fails."""
        route, exchange.direct = exchange.direct, None
        assert route is not None
        try:
            taken = route(exchange)
        except Exception:
            log.exception("%s: the direct route for %s failed", self.site.name, exchange.scope["path"])
            taken = False
            if exchange.response_started:
                exchange.abort_response()
                return
        if not taken:
            self.run_app(exchange)

    def run_app(self, exchange: Exchange) -> None:
        """Serve ``exchange`` with the ASGI app (a direct route declined or handed it back)."""
        if exchange is self.running and not self.closed and not self.lingering:
            self.site.track(self.loop.create_task(exchange.run()))

    def response_done(self, exchange: Exchange) -> None:
        """The app sent the last of its response: next request, keep-alive, linger or close."""
        if exchange is not self.running:
            return
        self.running = None
        self.served += 1
        if self.closed or self.lingering:
            return
        if exchange is self.parsing:
            self._linger()  # answered before the body arrived
        elif not exchange.keep_alive or self.site.terminated:
            self.close()
        else:
            self._next()

    def abandon(self, exchange: Exchange) -> None:
        """The app ended without finishing its response (or failed in it): end the connection."""
        if exchange is not self.running:
            return
        self.running = None
        if self.closed or self.lingering:
            return
        if exchange is self.parsing:
            self._linger()
        else:
            self.close()

    def _next(self) -> None:
        if self.queue:
            self._start(self.queue.popleft())
            self._update_reading()
        elif self.refusal is not None:
            refusal, self.refusal = self.refusal, None
            self._refuse(refusal)
            return
        else:
            self.idle_since = self.loop.time()
            if self.head_partial and self.head_since is None:
                self.head_since = self.idle_since
        self._rearm()

    def body_taken(self, exchange: Exchange) -> None:
        if self.read_paused:
            self._update_reading()

    def _update_reading(self) -> None:
        if self.closed:
            return
        running = self.running
        pause = not self.lingering and (
            bool(self.queue) or (running is not None and len(running.body) > BODY_HIGH_WATER)
        )
        if pause == self.read_paused:
            return
        self.read_paused = pause
        if pause:
            self.paused_at = self.loop.time()
            self.transport.pause_reading()
        else:
            if self.paused_at is not None:
                self.body_deadline += self.loop.time() - self.paused_at
                self.paused_at = None
            self.transport.resume_reading()
            self._rearm()

    # -- writing -------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.closed and not self.lingering:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the transport holds more than its high-water mark (the client is slow)."""
        if self.write_paused and not self.closed:
            waiter = self.write_waiter
            if waiter is None:
                waiter = self.write_waiter = self.loop.create_future()
            await waiter

    # -- deadlines and endings -----------------------------------------------------------------

    def _deadline(self) -> tuple[str, float] | None:
        limits = self.site.limits
        if self.lingering:
            return ("linger", self.linger_until)
        if self.running is not None:
            if self.running is self.parsing and self.paused_at is None:
                return ("body", self.body_deadline)
            return None  # a response is on its way: no bound
        if self.head_partial:
            return ("head", (self.head_since or self.idle_since) + limits.header_timeout_s)
        if self.served == 0:
            return ("head", self.connected_at + limits.header_timeout_s)
        return ("idle", self.idle_since + limits.keep_alive_timeout_s)

    def _rearm(self) -> None:
        """Make sure the timer fires no later than the current deadline (it may fire earlier)."""
        deadline = self._deadline()
        if deadline is None or self.closed:
            return
        when = deadline[1]
        if self.timer is None or when < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer_at = when
            self.timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        deadline = self._deadline()
        if deadline is None or self.closed:
            return
        kind, when = deadline
        if when > self.loop.time():
            self._rearm()
            return
        limits = self.site.limits
        if kind == "body":
            self._refuse(timed_out("request body", limits.body_timeout_s))
        elif kind == "head" and self.received:
            self._refuse(timed_out("request head", limits.header_timeout_s))
        else:
            self.close()  # idle past keep-alive, silent since the connect, or done lingering

    def _refuse(self, refusal: Refused) -> None:
        """Answer ``refusal`` (unless a response is already on the wire), then linger and close."""
        if self.closed or self.lingering:
            return
        running = self.running
        if running is not None and running is not self.parsing:
            # A later (pipelined) request is at fault: the ones before it are answered first.
            self.finished = True
            self.refusal = refusal
            self._update_reading()
            return
        if running is None or not running.response_started or running.head is not None:
            self.transport.write(refusal.response())
        self._linger()

    def _linger(self) -> None:
        """Shut our side and drop what the client still sends, until its EOF or ``LINGER_S``.

        Closing with unread bytes makes the kernel reset the connection, which can reach the
        client before the answer does.
        """
        self.finished = self.lingering = True
        for exchange in (self.running, self.parsing, *self.queue):
            if exchange is not None:
                exchange.lost()
        self.queue.clear()
        self.running = self.parsing = None
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        try:
            self.transport.write_eof()
        except (OSError, RuntimeError, NotImplementedError):
            self.close()
            return
        self.linger_until = self.loop.time() + LINGER_S
        self._rearm()

    def shutdown(self) -> None:
        """The server is stopping: close now if idle, else once the request in hand is answered."""
        if not self.closed and not self.lingering and self.running is None and not self.head_partial:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for exchange in (self.running, self.parsing, *self.queue):
                if exchange is not None:
                    exchange.lost()
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        self.transport.abort()
