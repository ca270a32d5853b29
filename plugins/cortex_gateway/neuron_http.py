"""A lean HTTP/1.1 client for the relay path: one request at a time on pooled keep-alive
connections to neurons.

Why not aiohttp here. The relay is the gateway's hot path: at 64 paced streams it forwards
thousands of chunks a second and starts a hundred requests a second on one core. Profiled there,
aiohttp's client spent more per request than the rest of the gateway (URL objects, the cookie
jar, tracing hooks, a response object graph) and re-armed a timer on every chunk for the read
timeout. Neurons speak HTTP/1.1 (plain, or TLS where a proxy fronts them), so this module
handles exactly that and nothing more:

- ``Content-Length``, chunked and close-delimited bodies, ``1xx`` interim replies skipped, parsed
  by llhttp (through httptools, the parser uvicorn and aiohttp use) with the framing checks it
  leaves to its caller done here;
- keep-alive reuse, with one retry on a fresh connection when a reused one turns out to have
  been closed by the neuron before it answered (the request never reached it);
- a stall timeout per read as one lazily re-armed timer per request, not one per chunk;
- flow control: reading from the neuron pauses while more than :data:`HIGH_WATER` bytes wait
  for a slow client, so a stalled client never makes the gateway buffer a whole generation;
- pieces that arrived while the relay was busy are handed over joined, so a gateway under load
  writes fewer, larger chunks instead of queueing many small ones;
- a relay that can write to its client synchronously (:meth:`NeuronResponse.divert`) gets each
  read's pieces, joined, straight from ``data_received``: no future and no task step per piece;
- a relay with no task at all (the gateway's direct route) sends with :meth:`NeuronPool.request_now`
  and hears the head and the end through a :class:`ReplyWatcher`'s callbacks.

The control plane (polls, loads, admin calls) stays on aiohttp, where convenience matters more
than microseconds.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import ssl
from collections.abc import Callable
from typing import Protocol, cast
from urllib.parse import urlsplit

import httptools
import msgspec

HIGH_WATER = 1024 * 1024
# The most bytes a reply may send without a body byte: its head, then between two pieces of body
# (a chunk-size line with its extensions, the trailer section). llhttp keeps no buffer of its own
# for these but would read a line that never ends for ever; past this the neuron is broken.
MAX_HEAD_BYTES = 64 * 1024
IDLE_TIMEOUT_S = 30.0
MAX_IDLE_PER_ORIGIN = 256
MAX_BUSY_PER_ORIGIN = 512


class NeuronHTTPError(ConnectionError):
    """The connection failed or the neuron's reply was not valid HTTP/1.1."""


class NoResponse(NeuronHTTPError):
    """Failed before the first response byte: the request may be retried on another node."""


class ReplyWatcher(Protocol):
    """Told of a reply's head and end from the connection's callbacks, for a consumer with no
    task to wait in (:meth:`NeuronResponse.watch`). Neither call may raise."""

    def head(self) -> None:
        """The status and headers are in (called while llhttp parses them: the body pieces of
        the same read reach a sink set now)."""
        ...

    def ended(self, error: BaseException | None) -> None:
        """The reply is complete (``None``), or failed with what :meth:`NeuronResponse.next_piece`
        would raise, before or after its head; every piece went to the sink first."""
        ...


class Origin(msgspec.Struct, frozen=True):
    """Where a neuron listens, parsed once from its configured endpoint.

    The pool keys its connections by it several times a request; a frozen Struct hashes and
    compares in C, where a frozen dataclass runs a generated Python ``__hash__`` each time.
    """

    host: str
    port: int
    prefix: str = ""
    host_header: bytes = b""
    tls: bool = False

    @classmethod
    def from_endpoint(cls, endpoint: str) -> Origin:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"a neuron endpoint is an http(s)://host:port URL, not {endpoint!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        return cls(host, port, parts.path.rstrip("/"), f"{shown}:{port}".encode("ascii"), tls)


class NeuronResponse:
    """One reply: status and headers once :meth:`wait_head` returns, then the body in pieces.

    It is also the llhttp parser's callback object (the ``on_*`` methods, and ``on_body``, the
    append of the pieces' deque): llhttp finds the status line, the header lines, the chunk
    boundaries and the end of the body, and calls back once per header and once per piece of
    body; :meth:`feed` takes each read's pieces once it is parsed. What RFC 9112 asks of a
    client that llhttp leaves to its caller (``Transfer-Encoding`` as a list, the HTTP version,
    interim replies, HEAD, bytes past the end, a line that never ends) is checked here.
    """

    def __init__(
        self,
        connection: _Connection,
        stall_timeout_s: float | None,
        head_only: bool,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self._connection = connection
        self._on_done = on_done
        self._loop = connection.loop
        self._stall = stall_timeout_s
        self._head_only = head_only
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.reusable = False
        self._pieces: collections.deque[bytes] = collections.deque()
        # llhttp's body callback is the deque's own append, a C call per piece instead of a Python
        # frame (a paced stream's every token passes here); :meth:`feed` does the rest per read.
        # httptools looks its callbacks up once, so this is set before the parser is made.
        self.on_body: Callable[[bytes], None] = self._pieces.append
        # It calls back into this object: dropped when the reply finishes, so that the reply and
        # its parser are freed at once instead of waiting for the cycle collector.
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self._head_done = False
        self._interim = False
        self._ended = False  # llhttp saw the end of the body; completed once its bytes are all read
        self._got_bytes = False
        self._unframed = 0  # bytes read since the last body byte (the head's, before it)
        self._framing = "none"
        self._sink: Callable[[bytes], bool] | None = None
        self._watcher: ReplyWatcher | None = None
        self._buffered = 0
        self._paused = False
        self._done = False
        self._closed = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._waiting_since = 0.0
        self._last_read = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None
        if stall_timeout_s is not None:
            self._timer = self._loop.call_at(self._last_read + stall_timeout_s, self._check_stall)

    # -- what the consumer calls --------------------------------------------------------------

    async def wait_head(self) -> None:
        """Wait for the status line and headers (or the error that prevented them)."""
        while not self._head_done:
            await self._wait()

    async def next_piece(self) -> bytes | None:
        """Everything that arrived since the last call, or ``None`` at the end of the body."""
        while not self._pieces:
            if self._error is not None:
                raise self._error
            if self._done:
                return None
            await self._wait()
        pieces = self._pieces
        piece = pieces.popleft() if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()
        self._buffered = 0
        if self._paused:
            self._paused = False
            if not self._done:
                self._connection.resume()
        return piece

    async def divert(self, sink: Callable[[bytes], bool]) -> None:
        """Hand the body to ``sink`` as it arrives, from the connection's read callback; return
        at its end, or raise what :meth:`next_piece` would raise.

        Each read's pieces go to ``sink`` joined, once the read is parsed (pieces that arrived
        before the call go first). When ``sink`` returns false its consumer is full: reading
        from the neuron pauses (and no stall is counted) until :meth:`resume_diverted`.
        """
        self._sink = sink
        try:
            while True:
                if self._pieces:
                    self._hand_over(sink)
                if self._error is not None:
                    raise self._error
                if self._done:
                    return
                await self._wait()
        finally:
            self._sink = None

    def watch(self, watcher: ReplyWatcher) -> None:
        """Tell ``watcher`` of the head and the end instead of waking a waiting task; the
        consumer counts as waiting for bytes (a stall is counted) unless its sink is full."""
        self._watcher = watcher
        self._waiting_since = self._loop.time()

    def set_sink(self, sink: Callable[[bytes], bool]) -> None:
        """A watched reply's body, from now on: each read's pieces go to ``sink`` joined, as
        :meth:`divert` hands them over (reading pauses while it returns false)."""
        self._sink = sink

    def resume_diverted(self) -> None:
        """The diverted body's consumer can take more: read from the neuron again."""
        if self._paused:
            self._paused = False
            self._waiting_since = self._loop.time()
            if not self._done:
                self._connection.resume()

    def _hand_over(self, sink: Callable[[bytes], bool]) -> None:
        pieces = self._pieces
        piece = pieces.popleft() if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()
        self._buffered = 0
        if not sink(piece) and not self._paused:
            self._paused = True
            if not self._done:
                self._connection.pause()

    async def read(self) -> bytes:
        """The whole body."""
        parts = []
        while (piece := await self.next_piece()) is not None:
            parts.append(piece)
        return b"".join(parts)

    def close(self) -> None:
        """Stop: a reply not read to its end drops its connection, so the neuron sees the
        disconnect and stops generating; a finished one has already gone back to the pool."""
        if self._closed:
            return
        self._closed = True
        if self._watcher is not None:  # a watched reply's sink refers back to it: no cycle left
            self._watcher = self._sink = None
        if not self._done:
            self._finish()
            self._connection.abort()
        self._wake()

    def cut(self, reason: str) -> None:
        """End an unfinished reply now as if the neuron had dropped it (the gateway drains):
        the reader gets :class:`NeuronHTTPError` and the neuron sees the disconnect."""
        if self._done:
            return
        self._fail(NeuronHTTPError(reason))
        self._connection.abort()

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise NeuronHTTPError("the reply was closed")
        waiter = self._waiter = self._loop.create_future()
        self._waiting_since = self._loop.time()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _check_stall(self) -> None:
        """The lazy stall timer: fail only when a reader has waited ``stall`` seconds for bytes.

        Time the consumer spends elsewhere (a slow client, reading paused) is not a stall, so
        the clock runs from the later of the last byte and the start of the current wait.
        """
        self._timer = None
        if self._done or self._stall is None:
            return
        now = self._loop.time()
        # The consumer is behind, not the neuron: busy elsewhere, or its sink full.
        busy = (self._waiter is None and self._watcher is None) or self._paused
        since = now if busy else max(self._last_read, self._waiting_since)
        if now - since >= self._stall:
            self._fail(TimeoutError(f"no bytes from the neuron for {self._stall:g} s"))
            self._connection.abort()
            return
        self._timer = self._loop.call_at(since + self._stall, self._check_stall)

    # -- what the connection calls ------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:  # finished: its connection is closed or back in the pool
            return
        self._got_bytes = True
        self._last_read = self._loop.time()
        self._unframed += len(data)
        pieces = self._pieces
        sink = self._sink
        held = 0 if sink is not None else len(pieces)  # a diverted body is handed over every read
        try:
            parser.feed_data(data)
            if len(pieces) != held:  # llhttp appended this read's pieces of body (``on_body``)
                self._unframed = 0
                if self._done:  # a reply to HEAD has none (llhttp, not told it was HEAD, reads one)
                    while len(pieces) > held:
                        pieces.pop()  # never read: the reply ended with its head
                    raise NeuronHTTPError("the neuron sent a body where none was expected")
                sink = self._sink  # a watcher may have set it at the head, in this read
                if sink is not None:
                    self._hand_over(sink)
                else:
                    self._buffered += sum(map(len, itertools.islice(pieces, held, None)))
                    if self._buffered > HIGH_WATER and not self._paused:
                        self._paused = True
                        self._connection.pause()
                    self._wake()
            if self._ended:
                # Completed only now, once every byte of this read is parsed: bytes past the end
                # of a body (a wrong Content-Length, a second reply) fail it above instead.
                self._complete()
            elif self._unframed > MAX_HEAD_BYTES and not self._done:
                if not self._head_done:
                    raise NeuronHTTPError("the neuron's response head is too large")
                raise NeuronHTTPError(
                    f"{self._unframed} bytes of chunk framing without a body byte: a chunk-size or"
                    " trailer line without CRLF, or a trailer section too large"
                )
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._reject(cause if isinstance(cause, NeuronHTTPError) else NeuronHTTPError(str(exc)))
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            where = "response head" if not self._head_done else "body framing"
            self._reject(NeuronHTTPError(f"the neuron's {where} is not valid HTTP/1.1: {exc}"))
        except NeuronHTTPError as exc:
            self._reject(exc)

    def feed_eof(self) -> None:
        if self._done:
            return
        if self._head_done and self._framing == "close":
            self.reusable = False
            self._complete()
        else:
            self.lost(None)

    def lost(self, exc: BaseException | None) -> None:
        if self._done:
            return
        reason = f": {exc}" if exc else ""
        if not self._got_bytes:
            self._fail(NoResponse(f"the neuron closed the connection before answering{reason}"))
        elif self._head_done and self._framing == "close":
            self._complete()
        else:
            self._fail(NeuronHTTPError(f"the neuron closed the connection mid-reply{reason}"))

    # -- what llhttp calls (an exception here fails the reply, through feed) --------------------

    def on_message_begin(self) -> None:
        if self._head_done:  # the reply ended, and more bytes follow it
            where = "past Content-Length" if self._framing == "length" else "after the end of the body"
            raise NeuronHTTPError(f"the neuron sent bytes {where}")

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp has checked the name is a token and the value has no control bytes, and has
        # dropped the whitespace before the value; a trailer field (after the body) is ignored.
        if not self._head_done:
            self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1").rstrip(" \t")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None  # it is the one calling
        status = parser.get_status_code()
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise NeuronHTTPError(f"not an HTTP/1.1 status line: version {version}")
        if status < 100:  # RFC 9110 §15: three digits, 100 to 599 (llhttp takes 000 to 999)
            raise NeuronHTTPError(f"not an HTTP/1.1 status line: status {status:03d}")
        if 100 <= status < 200:
            self._interim = True  # 100 Continue, 103 Early Hints: the real reply follows
            self.headers = []
            return
        self._set_head(status, version == "1.1", self.headers)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
        elif not self._done:
            self._ended = True

    def _set_head(self, status: int, http11: bool, headers: list[tuple[str, str]]) -> None:
        self.status = status
        codings: list[str] = []
        lengths: list[str] = []
        connection: list[str] = []
        for name, value in headers:
            if name == "transfer-encoding":
                codings += _tokens(value)
            elif name == "content-length":
                lengths.append(value)
            elif name == "connection":
                connection += _tokens(value)
        self.reusable = http11 and "close" not in connection
        if self._head_only or status in (204, 304):
            self._framing = "none"
        elif codings:
            # RFC 9112 §6.1/§6.3: a list of codings, chunked exactly once and last (llhttp reads
            # a reply with any other list to the end of the connection); with Content-Length too
            # it is a framing conflict (a smuggling shape), which llhttp rejects before this.
            if codings != ["chunked"]:
                raise NeuronHTTPError(f"unsupported Transfer-Encoding: {', '.join(codings)!r}")
            self._framing = "chunked"
        elif lengths:
            # llhttp rejects a second Content-Length and anything but digits; this bounds it.
            if not _is_length(lengths[0]):
                raise NeuronHTTPError(f"invalid Content-Length: {lengths[0]!r}")
            self._framing = "length"
        else:
            self._framing = "close"
            self.reusable = False
        self._head_done = True
        self._unframed = 0
        if self._watcher is not None:
            self._watcher.head()
        if self._head_only:  # llhttp, not told the request was HEAD, would wait for a body
            self._complete()
        self._wake()

    def _complete(self) -> None:
        self._ended = False
        self._finish()
        self._connection.release(self)
        self._wake()
        self._tell_end(None)

    def _tell_end(self, error: BaseException | None) -> None:
        watcher = self._watcher
        if watcher is not None:
            self._watcher = None
            sink, self._sink = self._sink, None  # it refers back to this reply: no cycle left
            if self._pieces and sink is not None:
                self._hand_over(sink)  # what arrived before a failure goes out first
            watcher.ended(error)

    def _finish(self) -> None:
        self._done = True
        self._parser = None  # still running if it called this; it finishes the read it has
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._on_done is not None:
            on_done, self._on_done = self._on_done, None
            on_done()

    def _fail(self, error: BaseException) -> None:
        if self._done:
            return
        self._error = error
        self.reusable = False
        self._finish()
        self._wake()
        self._tell_end(error)

    def _reject(self, error: NeuronHTTPError) -> None:
        """The reply is not valid HTTP/1.1: fail it and drop the connection it came on."""
        self._fail(error)
        self._connection.abort()


def _payload(origin: Origin, method: str, path: str, header_block: bytes, body: bytes) -> list[bytes]:
    """A request's bytes: its head (``Host`` and ``Content-Length`` added) and its body."""
    head = b"%s %s HTTP/1.1\r\nhost: %s\r\ncontent-length: %d\r\n%s\r\n" % (
        method.encode("ascii"),
        (origin.prefix + path).encode("ascii"),
        origin.host_header,
        len(body),
        header_block,
    )
    return [head, body] if body else [head]


def _tokens(value: str) -> list[str]:
    """A comma-separated list header (``Transfer-Encoding``, ``Connection``) as lower-case tokens."""
    return [token for part in value.split(",") if (token := part.strip(" \t").lower())]


def _is_length(value: str) -> bool:
    """At most 18 digits: an ``int`` that cannot overflow anything downstream (llhttp allows 20)."""
    return 0 < len(value) <= 18


class _Connection(asyncio.Protocol):
    """One keep-alive connection; it serves one :class:`NeuronResponse` at a time."""

    def __init__(self, pool: NeuronPool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.response: NeuronResponse | None = None
        self.closed = False
        self.reading_paused = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.pool.opened(self)

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:
            self.abort()  # bytes nobody asked for: this connection can no longer be trusted
            return
        response.feed(data)

    def eof_received(self) -> bool | None:
        if self.response is not None:
            self.response.feed_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.lost(self)
        response, self.response = self.response, None
        if response is not None:
            response.lost(exc)

    def send(self, response: NeuronResponse, payload: list[bytes]) -> None:
        assert self.transport is not None
        self.response = response
        self.transport.writelines(payload)

    def release(self, response: NeuronResponse) -> None:
        """The reply is complete: back to the pool if the neuron keeps the connection open."""
        if self.response is response:
            self.response = None
        if self.reading_paused:
            self.resume()
        if response.reusable and not self.closed:
            self.pool.put(self)
        else:
            self.abort()

    def pause(self) -> None:
        if self.transport is not None and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed and self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        """Close now; the neuron sees the disconnect (and stops a generation in progress)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class NeuronPool:
    """Keep-alive connections to neurons, newest reused first, idle ones dropped after a while."""

    def __init__(
        self,
        *,
        connect_timeout_s: float = 10.0,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        max_idle_per_origin: int = MAX_IDLE_PER_ORIGIN,
        max_busy_per_origin: int = MAX_BUSY_PER_ORIGIN,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.max_idle = max_idle_per_origin
        self.max_busy = max_busy_per_origin
        self._busy: dict[Origin, int] = {}
        self._queued: dict[Origin, collections.deque[asyncio.Future[None]]] = {}
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        # The latest abort() per origin (a new tuple each time): a request connecting then sees it too.
        self._aborted: dict[Origin, tuple[int, str]] = {}
        self._tls = tls_context  # for https:// neurons; the system's trust store when not given

    async def request(
        self,
        origin: Origin,
        method: str,
        path: str,
        header_block: bytes,
        body: bytes,
        *,
        stall_timeout_s: float | None,
    ) -> NeuronResponse:
        """Send one request and return once the response head has arrived.

        ``header_block`` holds extra header lines, each ending in CRLF (``Host`` and
        ``Content-Length`` are added here). Raises :class:`NoResponse` when nothing came back
        (the caller may try another node), :class:`NeuronHTTPError` for a reply that is not
        HTTP, and :class:`TimeoutError` when the head stalls.
        """
        payload = _payload(origin, method, path, header_block, body)
        aborted = self._aborted.get(origin)
        for attempt in range(2):
            await self._acquire(origin)
            try:
                connection = self._take(origin)
                reused = connection is not None
                if connection is None:
                    connection = await self._connect(origin)
                if self._aborted.get(origin) is not aborted:  # its node was declared down meanwhile
                    connection.abort()
                    raise NeuronHTTPError(self._aborted[origin][1])
            except BaseException:
                self._release(origin)
                raise
            response = self._send(connection, method, payload, stall_timeout_s)
            try:
                await response.wait_head()
            except NoResponse:
                if reused and attempt == 0:
                    continue  # the neuron had closed this idle connection; the request never arrived
                raise
            except BaseException:
                response.close()
                raise
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def request_now(
        self,
        origin: Origin,
        method: str,
        path: str,
        header_block: bytes,
        body: bytes,
        *,
        stall_timeout_s: float | None,
    ) -> NeuronResponse | None:
        """:meth:`request` for a caller with no task: sent now on an idle pooled connection and
        returned before any reply, or ``None`` (nothing sent) when no slot is free or no
        connection is idle. The reply is followed with :meth:`NeuronResponse.watch`; a reused
        connection the neuron had closed fails it with :class:`NoResponse`, which this does not
        retry (the caller may send again through :meth:`request`)."""
        busy = self._busy.get(origin, 0)
        if busy >= self.max_busy:
            return None
        connection = self._take(origin)
        if connection is None:
            return None
        self._busy[origin] = busy + 1
        return self._send(
            connection, method, _payload(origin, method, path, header_block, body), stall_timeout_s
        )

    def _send(
        self, connection: _Connection, method: str, payload: list[bytes], stall_timeout_s: float | None
    ) -> NeuronResponse:
        """Send ``payload`` on ``connection`` (its slot taken); the reply gives the slot back."""
        origin = connection.origin
        response = NeuronResponse(
            connection, stall_timeout_s, method == "HEAD", on_done=lambda: self._release(origin)
        )
        connection.send(response, payload)
        return response

    async def _acquire(self, origin: Origin) -> None:
        """Wait for one of the ``max_busy`` request slots towards ``origin``.

        A burst of clients must not become a burst of connections to one neuron (each one a
        socket there); the excess waits here, in arrival order, for a reply to finish.
        """
        busy = self._busy.get(origin, 0)
        if busy < self.max_busy:
            self._busy[origin] = busy + 1
            return
        waiter = asyncio.get_running_loop().create_future()
        queue = self._queued.setdefault(origin, collections.deque())
        queue.append(waiter)
        try:
            await waiter  # a finishing reply hands its slot over
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release(origin)  # handed over just as this request gave up: pass it on
            else:
                queue.remove(waiter)
            raise

    def _release(self, origin: Origin) -> None:
        queue = self._queued.get(origin)
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._busy[origin] -= 1

    def busy(self, origin: Origin) -> int:
        """Requests towards ``origin`` that hold a slot (a reply not yet finished)."""
        return self._busy.get(origin, 0)

    def put(self, connection: _Connection) -> None:
        idle = self._idle.setdefault(connection.origin, [])
        if len(idle) >= self.max_idle:
            idle[:] = [c for c in idle if not c.closed]
            if len(idle) >= self.max_idle:
                connection.abort()
                return
        connection.idle_since = connection.loop.time()
        idle.append(connection)

    def opened(self, connection: _Connection) -> None:
        self._open.add(connection)

    def lost(self, connection: _Connection) -> None:
        self._open.discard(connection)

    def can_send_now(self, origin: Origin) -> bool:
        """Whether :meth:`request_now` would send to ``origin`` now: a free request slot and an
        idle connection (closed and expired ones are dropped on the way)."""
        return self._busy.get(origin, 0) < self.max_busy and self._usable_idle(origin) is not None

    def _take(self, origin: Origin) -> _Connection | None:
        idle = self._usable_idle(origin)
        return idle.pop() if idle else None

    def _usable_idle(self, origin: Origin) -> list[_Connection] | None:
        """``origin``'s idle connections, the closed and expired ones at the newest end dropped
        so that the last can be used; ``None`` when none can."""
        idle = self._idle.get(origin)
        while idle:
            connection = idle[-1]
            if (
                not connection.closed
                and connection.loop.time() - connection.idle_since <= self.idle_timeout_s
            ):
                return idle
            idle.pop()
            if not connection.closed:
                connection.abort()  # expired
        return None

    async def _connect(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        if origin.tls and self._tls is None:
            self._tls = ssl.create_default_context()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self, origin),
                    origin.host,
                    origin.port,
                    ssl=self._tls if origin.tls else None,
                )
        except OSError as exc:  # TimeoutError included
            raise NoResponse(f"cannot connect to {origin.host}:{origin.port}: {exc}") from exc
        return connection

    def abort(self, origin: Origin, reason: str) -> None:
        """Fail every reply in progress towards ``origin`` for ``reason``; drop its connections.

        The gateway calls this when it declares that neuron down. A request still waiting for
        its response head then fails over to another node, and a stream already relayed ends
        with the error event a neuron lost mid-stream gives. It costs the relay one dictionary
        lookup per request and nothing per chunk.
        """
        count = self._aborted[origin][0] + 1 if origin in self._aborted else 1
        self._aborted[origin] = (count, reason)
        self._idle.pop(origin, None)
        for connection in list(self._open):
            if connection.origin == origin:
                if connection.response is not None:
                    connection.response.cut(reason)  # what arrived is still handed over first
                connection.abort()

    async def close(self) -> None:
        """Close every connection, idle or busy (at shutdown)."""
        for connection in list(self._open):
            connection.abort()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run connection_lost
