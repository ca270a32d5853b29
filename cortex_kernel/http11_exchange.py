"""One request and its response on the httptools server: the ASGI ``receive`` and ``send``.

The connection (:mod:`cortex_kernel.http11`) parses the request and feeds its body here; the
app's task reads it with ``receive`` and answers with ``send``. What the app sees is what
hypercorn gives it: the same scope, the body in ``http.request`` messages, ``http.disconnect``
once the response is done or the client gone, and sends after that dropped rather than refused.

Two things differ from hypercorn on purpose, both on the hot path (issue #17): the response head
is held until the first body message and written with it (one ``send`` for a non-streamed answer
instead of two), and ``100 Continue`` is written when the app first reads the body, not as soon as
the head arrives, so a request answered from its head alone (a 401, a 413) never invites its body.

An exchange is also its request's ``cortex.splice`` extension (:mod:`cortex_kernel.splice`): a
streamed body written from another protocol's read callback, with no task wake-up per piece; and
the :class:`~cortex_kernel.direct.DirectExchange` a direct route answers with no task at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from starlette.types import Send

from cortex_kernel.direct import DirectRoute
from cortex_kernel.http11_framing import Framing, ResponseError, informational_head, response_head
from cortex_kernel.splice import SPLICE

if TYPE_CHECKING:
    from cortex_kernel.http11 import HttpConnection

log = logging.getLogger(__name__)

# Buffered request body past which the connection stops reading until the app takes it.
BODY_HIGH_WATER = 256 * 1024
NO_RESPONSE = [(b"content-length", b"0"), (b"connection", b"close")]


class Exchange:
    """A request's scope and body on their way in, and its response on the way out."""

    __slots__ = (
        "body",
        "body_done",
        "connection",
        "direct",
        "disconnected",
        "end_delivered",
        "expect_continue",
        "framing",
        "head",
        "head_request",
        "http10",
        "keep_alive",
        "lost_callback",
        "remaining",
        "response_done",
        "response_started",
        "scope",
        "waiter",
    )

    def __init__(
        self,
        connection: HttpConnection,
        scope: dict[str, Any],
        *,
        keep_alive: bool,
        expect_continue: bool,
    ) -> None:
        self.connection = connection
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.head_request = scope["method"] == "HEAD"
        self.http10 = scope["http_version"] == "1.0"
        self.body = bytearray()
        self.body_done = False
        self.end_delivered = False
        self.disconnected = False
        self.response_started = False
        self.response_done = False
        self.head: bytes | None = None
        self.framing = Framing.NONE
        self.remaining = 0
        self.waiter: asyncio.Future[None] | None = None
        self.lost_callback: Callable[[], None] | None = None
        # The direct route this request is held for until its body is in (cortex_kernel.direct).
        self.direct: DirectRoute | None = None

    # -- fed by the connection ---------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self.body += data
        self._wake()

    def end(self) -> None:
        self.body_done = True
        self._wake()

    def lost(self) -> None:
        """The client is gone, or the connection stopped serving it: the app hears a disconnect."""
        self.disconnected = True
        self._wake()
        callback = self.lost_callback
        if callback is not None:
            self.lost_callback = None
            callback()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- the app's task ----------------------------------------------------------------------

    async def run(self) -> None:
        connection = self.connection
        self.scope["extensions"][SPLICE] = self  # taken out when the app returns: no cycle left behind
        try:
            await connection.site.app(self.scope, self.receive, self.send)
        except Exception:
            log.exception("%s: error in the ASGI app", connection.site.name)
        finally:
            self.scope["extensions"].pop(SPLICE, None)
            self.lost_callback = None
        if self.response_done or self.disconnected:
            return
        if not self.response_started:
            # As hypercorn does: an app that ended (or failed) before answering gets a bare 500.
            try:
                await self.send({"type": "http.response.start", "status": 500, "headers": NO_RESPONSE})
                await self.send({"type": "http.response.body", "body": b""})
            except ResponseError:
                connection.abandon(self)
            return
        self.abort_response()  # the response was begun: only closing the connection can end it

    async def receive(self) -> MutableMapping[str, Any]:
        if self.expect_continue:
            self.expect_continue = False
            if not self.response_started and not self.disconnected:
                self.connection.write(informational_head(100, self.connection.site.date.now()))
        while True:
            if self.body or (self.body_done and not self.end_delivered):
                data = bytes(self.body)
                self.body.clear()
                if self.body_done:
                    self.end_delivered = True
                else:
                    self.connection.body_taken(self)
                return {"type": "http.request", "body": data, "more_body": not self.body_done}
            if self.disconnected or self.response_done:
                return {"type": "http.disconnect"}
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if self.disconnected:
            return  # the client is gone: dropped, as hypercorn drops it
        kind = message["type"]
        if kind == "http.response.body" and self.response_started and not self.response_done:
            if not message.get("more_body", False):
                self.finish_response(message.get("body", b""))
                return
            data = self._framed(message.get("body", b""), True)
            connection = self.connection
            if data:
                connection.write(data)
            if connection.write_paused:
                await connection.drain()
        elif kind == "http.response.start" and not self.response_started:
            self.start_response(int(message["status"]), message.get("headers", ()))
        else:
            raise ResponseError(f"unexpected ASGI message {kind!r} in this state of the response")

    def start_response(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """The head of the response, held until its first body bytes (``send``'s start message)."""
        if self.response_started:
            raise ResponseError("the response has already begun")
        start = response_head(
            status,
            headers,
            self.connection.site.date.now(),
            head_request=self.head_request,
            http10=self.http10,
            keep_alive=self.keep_alive,
        )
        self.response_started = True
        self.expect_continue = False
        self.keep_alive = start.keep_alive
        self.framing = start.framing
        self.remaining = start.length
        self.head = start.data

    def _framed(self, body: bytes, more: bool) -> bytes:
        """``body`` as it goes on the wire (the held head before it), checked against its framing."""
        framing = self.framing
        if framing is Framing.CHUNKED:
            data = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            if not more:
                data += b"0\r\n\r\n"
        elif framing is Framing.LENGTH:
            self.remaining -= len(body)
            if self.remaining < 0:
                raise ResponseError("the response body is longer than its Content-Length")
            if not more and self.remaining:
                raise ResponseError("the response body is shorter than its Content-Length")
            data = bytes(body)
        elif framing is Framing.CLOSE:
            data = bytes(body)
        else:
            data = b""
        head = self.head
        if head is not None:
            self.head = None
            data = head + data
        return data

    # -- the cortex.splice extension (cortex_kernel.splice.Splice) -----------------------------

    def serves(self, send: Send) -> bool:
        return send == self.send

    def write(self, body: bytes) -> bool:
        if self.disconnected or self.response_done:
            return True  # dropped, as send drops it; on_lost has told (or will tell) the caller
        if not self.response_started:
            raise ResponseError("a spliced body piece before http.response.start")
        connection = self.connection
        if self.framing is Framing.CHUNKED and self.head is None and body:
            data = b"%x\r\n%b\r\n" % (len(body), body)  # _framed's usual case, inline: once a token
        else:
            data = self._framed(body, True)
        if not connection.closed and not connection.lingering:  # HttpConnection.write, one call less
            connection.transport.write(data)
        return not connection.write_paused or connection.closed

    def on_writable(self, callback: Callable[[], None]) -> None:
        connection = self.connection
        if connection.write_paused and not connection.closed:
            connection.writable_callback = callback
        else:
            connection.loop.call_soon(callback)

    def on_lost(self, callback: Callable[[], None] | None) -> None:
        if callback is not None and self.disconnected:
            callback()
            return
        self.lost_callback = callback

    # -- the direct route's exchange (cortex_kernel.direct.DirectExchange) ---------------------

    def request_body(self) -> bytes:
        return bytes(self.body)

    def finish_response(self, body: bytes = b"") -> None:
        if self.disconnected or self.response_done:
            return  # dropped, as send drops it
        if not self.response_started:
            raise ResponseError("the response ended before it began")
        data = self._framed(body, False)
        connection = self.connection
        if data:
            connection.write(data)
        self.response_done = True
        self.lost_callback = None
        self._wake()
        connection.response_done(self)

    def to_app(self) -> None:
        if self.response_started:
            raise ResponseError("the response has begun: it cannot go to the app now")
        self.lost_callback = None
        if not self.disconnected:
            self.connection.run_app(self)

    def abort_response(self) -> None:
        self.lost_callback = None
        if not self.disconnected and not self.response_done:
            if self.head is not None:  # a head with no body yet: out with it, as hypercorn's
                self.connection.write(self.head)
                self.head = None
            self.connection.abandon(self)
