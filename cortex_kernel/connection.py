"""One client connection: hypercorn's HTTP/1.1 protocol, held to the ``[limits]`` bounds.

This replaces hypercorn's ``TCPServer`` (same building blocks, same event flow) for four reasons
the stock class cannot be configured out of:

- when the peer closes, the stock server waits out its keep-alive timer before releasing the
  socket (its task group still holds the idle-timeout task), so a connect-and-close flood piles
  up descriptors in CLOSE-WAIT; here the timer is stopped as soon as the reader sees EOF;
- it has no bound on receiving a request: a head or a body dripped a byte at a time holds the
  connection for as long as the client likes; here the head and the body each have a deadline,
  and a request that misses it is answered 408 and the connection closed;
- it accepts the framing shapes request smuggling relies on (``Content-Length`` together with
  ``Transfer-Encoding``, chunked HTTP/1.0), which h11 tolerates; here they are a 400 and a close;
- it serves h2c to any client that asks; here only when ``allow_h2c`` is on;
- when the app answers before the request body has arrived (a 413, a 401), it closes the socket
  with unread bytes in it, and the kernel then resets the connection: a client still sending
  gets a broken pipe instead of the answer. Here the connection lingers, as nginx's does: our
  side is shut, and what the client still sends is read and dropped for up to ``LINGER_S``.

No deadline ever applies while a response is being sent, so streams last as long as they need.
"""

from __future__ import annotations

import asyncio
import contextlib

import h11
from h11._writers import ChunkedWriter
from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.asyncio.worker_context import AsyncioSingleTask, WorkerContext
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.events import Body
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.typing import AppWrapper, ConnectionState, LifespanState

from cortex_kernel.config.schema import ConnectionLimits
from cortex_kernel.http_edge import (
    Refused,
    both_framings,
    chunked_on_http10,
    http2_preface,
    socket_address,
    timed_out,
)

MAX_RECV = 2**16
LINGER_S = 5.0


def check_framing(request: h11.Request) -> None:
    """Refuse the request shapes that let two parsers disagree on where a request ends.

    h11 already refuses conflicting ``Content-Length`` values and any transfer coding but one
    ``chunked`` (while reading the head, before this runs; see ``_send_error_response``). It
    accepts ``Content-Length`` beside ``Transfer-Encoding`` (it frames by the latter) and chunked
    bodies on HTTP/1.0, either of which lets a proxy in front of us read a different request
    boundary than we do (RFC 9112 §6.1, §6.3): both are a 400 and a closed connection.
    """
    chunked = has_length = False
    for name, _ in request.headers:
        if name == b"transfer-encoding":
            chunked = True
        elif name == b"content-length":
            has_length = True
    if chunked and has_length:
        raise both_framings()
    if chunked and request.http_version == b"1.0":
        raise chunked_on_http10()


class GuardedH11(H11Protocol):
    """hypercorn's HTTP/1.1 protocol with our framing checks and the h2c switch."""

    allow_h2c = False

    async def _check_protocol(self, event: h11.Request) -> None:
        check_framing(event)
        if self.allow_h2c:
            await super()._check_protocol(event)
        elif event.method == b"PRI" and event.http_version == b"2.0":
            raise http2_preface()
        # Otherwise an "Upgrade: h2c" header is ignored, as RFC 9110 §7.8 allows: the request
        # is answered in HTTP/1.1.

    async def stream_send(self, event: StreamEvent) -> None:
        """Frame a chunk of a chunked response body here, without an h11 event per chunk.

        A relayed stream sends one body chunk per token, and h11's path for each (an event
        object, the state machine, a writer, a join) was the larger part of the gateway's
        per-chunk cost. While h11 is sending a chunked body a chunk's bytes are fixed (RFC 9112
        §7.1: size in hex, CRLF, data, CRLF) and its state does not change, so the bytes are
        built directly; every other event, and bodies framed by ``Content-Length``, go
        through h11 as before.
        """
        if type(event) is Body:
            connection = self.connection
            if connection.our_state is h11.SEND_BODY and type(connection._writer) is ChunkedWriter:
                data = event.data
                if data:
                    await self.send(RawData(data=b"%x\r\n%b\r\n" % (len(data), data)))
                return
        await super().stream_send(event)

    async def _send_error_response(self, status_code: int) -> None:
        # h11 refuses a transfer coding other than chunked while parsing the head, before
        # _check_protocol runs, with a 501 hint; a malformed request is the client's mistake.
        await super()._send_error_response(400 if status_code == 501 else status_code)


class Connection:
    """Serve one accepted socket until either side closes it."""

    def __init__(
        self,
        app: AppWrapper,
        config: HypercornConfig,
        context: WorkerContext,
        state: LifespanState,
        limits: ConnectionLimits,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.app = app
        self.config = config
        self.context = context
        self.state = state
        self.limits = limits
        self.reader = reader
        self.writer = writer
        self.send_lock = asyncio.Lock()
        self.idle_task = AsyncioSingleTask()
        self.protocol: ProtocolWrapper
        self.h11: GuardedH11
        self.received = False
        self.requests_seen = 0
        self.head_since: float | None = None
        self.head_begun = False
        self.body_since: float | None = None
        self.linger_until: float | None = None
        self.read_timeout: asyncio.Timeout | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        sock = self.writer.get_extra_info("socket")
        try:
            client = socket_address(sock.getpeername())
            server = socket_address(sock.getsockname())
            async with TaskGroup(loop) as task_group:
                self._task_group = task_group
                args = (self.app, self.config, self.context, task_group, ConnectionState(self.state))
                self.protocol = ProtocolWrapper(*args, False, client, server, self._send)
                self.h11 = GuardedH11(*args, False, client, server, self._send)
                self.h11.allow_h2c = self.limits.allow_h2c
                self.protocol.protocol = self.h11
                self.head_since = loop.time()
                await self.idle_task.restart(task_group, self._idle_timeout)
                await self._read_data(loop)
        except OSError:
            pass
        finally:
            await self._close()

    async def _read_data(self, loop: asyncio.AbstractEventLoop) -> None:
        while not self.reader.at_eof():
            try:
                async with asyncio.timeout_at(self._deadline()) as self.read_timeout:
                    data = await self.reader.read(MAX_RECV)
            except TimeoutError:
                if self.linger_until is None:
                    self._timed_out()
                break
            except OSError:  # ConnectionError included
                break
            finally:
                self.read_timeout = None
            if self.linger_until is not None:
                continue  # answered already: the rest of the body is read only to be dropped
            self.received = self.received or bool(data)
            try:
                await self.protocol.handle(RawData(data))
            except Refused as refusal:
                self._answer_and_close(refusal)
                break
            if self._track(loop.time()):
                # A request has begun: from here the head bound applies, not the idle one.
                await self.idle_task.stop()
        await self.protocol.handle(Closed())
        # The peer is gone (or we are done with it): stop the keep-alive timer now, or the task
        # group would hold this socket, in CLOSE-WAIT, until the timer ran out.
        await self.idle_task.stop()

    def _h11_state(self) -> object | None:
        """The client's h11 state, or None once the connection is not plain HTTP/1.1 any more."""
        connection = self.h11.connection
        if self.protocol.protocol is not self.h11 or not isinstance(connection, h11.Connection):
            return None
        return connection.their_state

    def _deadline(self) -> float | None:
        if self.linger_until is not None:
            return self.linger_until
        state = self._h11_state()
        if state is h11.IDLE and self.head_since is not None:
            return self.head_since + self.limits.header_timeout_s
        if state is h11.SEND_BODY and self.body_since is not None:
            return self.body_since + self.limits.body_timeout_s
        return None

    def _track(self, now: float) -> bool:
        """Start the head clock at a kept-alive request's first byte and the body clock at its end.

        True when a kept-alive request's head clock has just started.
        """
        state = self._h11_state()
        if state is h11.IDLE:
            partial = bool(self.h11.connection.trailing_data[0])
            if self.h11.keep_alive_requests != self.requests_seen:  # requests went through meanwhile
                self.requests_seen = self.h11.keep_alive_requests
                self.head_since = now if partial else None
                self.head_begun = partial
                return partial
            if partial and not self.head_begun:
                # The first bytes of a head (on a new connection too): no longer idle, so a drain
                # lets this request finish instead of closing the connection under it.
                self.head_begun = True
                if self.head_since is None:
                    self.head_since = now
                return True
        elif state is h11.SEND_BODY:
            self.head_since = None
            if self.body_since is None:
                self.body_since = now
        else:
            self.head_since = self.body_since = None
        return False

    def _timed_out(self) -> None:
        if not self.received:
            return  # a connection that never said a word is closed without one
        what = "request body" if self.body_since is not None else "request head"
        bound = self.limits.body_timeout_s if self.body_since is not None else self.limits.header_timeout_s
        self._answer_and_close(timed_out(what, bound))

    def _answer_and_close(self, refusal: Refused) -> None:
        """Write the refusal straight to the socket and end our side of it.

        It bypasses h11 on purpose: an app still running for this request then finds h11 in a
        state that lets it send, and its bytes meet a closed transport (which hypercorn's send
        path already treats as a gone client) instead of a protocol error.
        """
        connection = self.h11.connection
        answerable = isinstance(connection, h11.Connection) and connection.our_state in (
            h11.IDLE,
            h11.SEND_RESPONSE,
        )
        try:
            if answerable:
                self.writer.write(refusal.response())
            self.writer.write_eof()
        except (OSError, RuntimeError):
            pass

    async def _send(self, event: Event) -> None:
        if type(event) is RawData:
            transport = self.writer.transport
            if transport.is_closing():
                # Lost or closed: the bytes go nowhere. No drain either: it would re-raise the
                # reader's stored error, the same object each time, its traceback growing with
                # every chunk an app still sends. Closing the stream again is a no-op.
                await self.protocol.handle(Closed())
                return
            # Written at once; the drain (a lock and two awaits per chunk) only when the kernel
            # did not take it all, the only case in which drain() can have to wait.
            try:
                transport.write(event.data)
            except (ConnectionError, RuntimeError):  # our side is shut (a refusal, a linger)
                await self.protocol.handle(Closed())
                return
            if not transport.get_write_buffer_size():
                return
            async with self.send_lock:
                try:
                    await self.writer.drain()
                except (ConnectionError, RuntimeError):
                    await self.protocol.handle(Closed())
        elif isinstance(event, Closed):
            if not self._linger():
                await self._close()
        elif isinstance(event, Updated):
            if event.idle:
                await self.idle_task.restart(self._task_group, self._idle_timeout)
            else:
                await self.idle_task.stop()

    def _linger(self) -> bool:
        """Shut our side but keep reading, when the client is still sending a body we answered.

        Closing a socket with unread bytes makes the kernel send a reset, which can reach the
        client before it reads the answer. So our side is shut (the client sees the answer and
        our FIN) and the read loop drops what still arrives until EOF or ``LINGER_S``; the socket
        is closed when the loop ends. False when there is nothing to wait for.
        """
        if self.linger_until is not None:
            return True
        if self._h11_state() is not h11.SEND_BODY or self.reader.at_eof():
            return False
        try:
            self.writer.write_eof()
        except (OSError, RuntimeError):
            return False
        self.linger_until = asyncio.get_running_loop().time() + LINGER_S
        if self.read_timeout is not None:
            self.read_timeout.reschedule(self.linger_until)
        return True

    async def _close(self) -> None:
        with contextlib.suppress(NotImplementedError, OSError, RuntimeError):
            self.writer.write_eof()
        try:
            self.writer.close()
            await self.writer.wait_closed()
        except (
            BrokenPipeError,
            ConnectionAbortedError,
            ConnectionResetError,
            RuntimeError,
            asyncio.CancelledError,
        ):
            pass
        finally:
            await self.idle_task.stop()

    async def _idle_timeout(self) -> None:
        """Close a connection idle past the keep-alive bound, or at once when the server stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.context.terminated.wait(), self.config.keep_alive_timeout)
        await asyncio.shield(self._initiate_close())

    async def _initiate_close(self) -> None:
        await self.protocol.handle(Closed())
        self.writer.close()
