"""The relay routes' direct route: a request answered from socket callbacks, with no ASGI task.

The kernel's httptools server offers a relay route's whole request to :class:`DirectRelay`
(:mod:`cortex_kernel.direct`) before it would start the lane's task. The route takes it only
when it can be sent to a neuron at once, exactly as the lane would send it: the gateway has
started, the key is good (or none is needed), the request names no routing header, its body is
JSON the lane would accept and not over the size limit, its model resolves to one with a ready
replica, and that node has a free request slot and an idle pooled connection. Then the request
goes out from the client connection's read callback, and :class:`DirectCall` answers it from the
neuron connection's callbacks: the head with the first body bytes, each read of a stream tapped
and written through the splice, a whole reply with its ``Content-Length``, and the same
``RequestFinished`` as the lane's.

Everything else is the lane's, which keeps every behaviour its own tests cover: a declined
request (a cold load, a wait for room, a refusal to render, routing headers to read) is served
by it from the start, and a taken one whose neuron fails before its first byte (a stale pooled
connection, a node gone, a 404 for a model that left) is handed to it with what the attempt
learnt (:class:`~cortex_gateway.proxy.FirstAttempt`), so it fails over as it would have. The
measurements behind this path are in ``docs/performance.md`` (issue #17).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.responses import Response

from cortex_gateway.auth import ClientKeys
from cortex_gateway.fleet import Node
from cortex_gateway.neuron_http import NeuronResponse, NoResponse
from cortex_gateway.proxy import (
    FIRST_ATTEMPT,
    FirstAttempt,
    Forwarder,
    NeuronReply,
)
from cortex_gateway.spliced_body import SplicedBody
from cortex_gateway.tap import RequestTap
from cortex_kernel.app import error_response
from cortex_kernel.bodies import check_media_type
from cortex_kernel.direct import DirectExchange
from cortex_kernel.errors import CortexError
from cortex_kernel.http11_framing import ResponseError

log = logging.getLogger(__name__)

JSON = b"application/json"


class DirectRelay:
    """The direct route of one relay path (``POST /v1/chat/completions`` and its siblings)."""

    def __init__(
        self,
        path: str,
        forwarder: Callable[[], Forwarder | None],
        keys: ClientKeys,
        hint_headers: frozenset[bytes],
    ) -> None:
        self.path = path
        self.forwarder = forwarder
        self.keys = keys
        # The request headers the lane's RoutingHeaders middleware reads: their requests are its.
        self.hint_headers = hint_headers

    def __call__(self, exchange: DirectExchange) -> bool:
        """Take the request and send it to a neuron now, or decline it (false) for the lane."""
        forwarder = self.forwarder()
        if forwarder is None:
            return False
        headers = exchange.scope["headers"]
        hint_headers = self.hint_headers
        content_type = None
        for name, value in headers:
            if name in hint_headers:
                return False
            if name == b"content-type" and content_type is None:
                content_type = value
        if not self.keys.admits(headers):
            return False  # the lane refuses it, in the caller's dialect, and counts the refusal
        if content_type is not None and content_type != JSON:
            try:
                check_media_type(content_type.decode("latin-1"))
            except CortexError:
                return False
        body = exchange.request_body()
        if len(body) > forwarder.max_body_bytes:
            return False
        try:
            fields, model, body = forwarder.routed(body)
        except CortexError:
            return False  # rendered by the lane
        hints = forwarder.resolved_hints(
            model, forwarder.body_hints(fields) if forwarder.wants_hints(model) else None, body
        )
        pool = forwarder.pool
        node = forwarder.placement.ready_node(model, hints, lambda node: pool.can_send_now(node.origin))
        if node is None:
            return False
        upstream = pool.request_now(
            node.origin,
            "POST",
            self.path,
            forwarder.header_block_for(hints),
            body,
            stall_timeout_s=forwarder.stall,
        )
        if upstream is None:
            return False
        forwarder.sending(node, model)
        tap = forwarder.new_tap(self.path, model, started=None, streamed=fields.stream)
        tap.node = node.name
        tap.direct = True
        call = DirectCall(forwarder, exchange, node, model, upstream, tap, fields.stream)
        upstream.watch(call)
        exchange.on_lost(call.lost)
        return True


class DirectCall:
    """One taken request, answered from the neuron connection's callbacks (a
    :class:`~cortex_gateway.neuron_http.ReplyWatcher`)."""

    __slots__ = (
        "body",
        "client_gone",
        "exchange",
        "forwarder",
        "gone",
        "model",
        "node",
        "parts",
        "reply",
        "settled",
        "started",
        "streamed",
        "tap",
        "upstream",
    )

    def __init__(
        self,
        forwarder: Forwarder,
        exchange: DirectExchange,
        node: Node,
        model: str,
        upstream: NeuronResponse,
        tap: RequestTap,
        streamed: bool,
    ) -> None:
        self.forwarder = forwarder
        self.exchange = exchange
        self.node = node
        self.model = model
        self.upstream = upstream
        self.tap = tap
        self.streamed = streamed
        self.reply: NeuronReply | None = None
        self.body: SplicedBody | None = None  # a stream's sink, once its head is out
        self.parts: list[bytes] = []  # a whole reply's pieces
        self.gone = False  # the node answered 404: the model left it
        self.client_gone = False
        self.started = False  # the client's response has begun
        self.settled = False  # the in-flight count was given back before a reply took it over

    # -- the neuron's side (ReplyWatcher) ----------------------------------------------------

    def head(self) -> None:
        try:
            self._head()
        except Exception as exc:  # a watcher must not raise into the neuron's parser
            self._failed(exc)

    def ended(self, error: BaseException | None) -> None:
        try:
            self._ended(error)
        except Exception as exc:  # nor into its connection's read callback
            self._failed(exc)

    def _head(self) -> None:
        upstream = self.upstream
        status = upstream.status
        if status == 404 and self.forwarder.max_attempts > 1:
            self.gone = True  # read to its end (the connection stays good), then placed again
            upstream.set_sink(self._collect)
            return
        reply = self.reply = NeuronReply(
            self.node, self.model, upstream, self.tap, self.forwarder.open_replies
        )
        if not (self.streamed and status == 200):
            upstream.set_sink(self._collect)  # a whole reply, relayed in one piece as the lane does
            return
        self.tap.streamed = True
        try:
            self.exchange.start_response(status, reply.raw_headers())
            self.started = True
        except ResponseError as exc:  # a neuron head no response may carry
            self._failed(exc)
            return
        body = self.body = SplicedBody(self.exchange, self.tap.chunk, upstream)
        upstream.set_sink(body.take)
        if self.client_gone:
            reply.close()

    def _ended(self, error: BaseException | None) -> None:
        reply = self.reply
        if reply is None:
            self._to_lane(error)
        elif self.body is not None:
            self._end_stream(reply, self.body, error)
        elif self.started:
            return  # a whole reply's response begins only here: this one was an error at the head
        elif error is None:
            payload = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
            reply.took(payload)
            self._whole(reply.status, reply.raw_headers(), payload)
        else:
            failure = reply.broken(error)
            reply.close()
            self._error(failure)

    def _collect(self, piece: bytes) -> bool:
        self.parts.append(piece)
        return True

    # -- the client's side -------------------------------------------------------------------

    def lost(self) -> None:
        """The client left: a stream stops its generation (as the lane's splice does); a whole
        reply is read to its end and counted, as the lane reads it."""
        self.client_gone = True
        if self.body is not None and self.reply is not None:
            self.reply.close()

    def _end_stream(self, reply: NeuronReply, body: SplicedBody, error: BaseException | None) -> None:
        if error is None:
            reply.close()
            self.exchange.finish_response()
            return
        failure = reply.broken(error)
        reply.close()
        frame = reply.error_frame(failure, body.last)
        if frame is None:
            log.warning("stream from %s cut mid-frame: %s", self.node.name, failure.message)
            self.exchange.abort_response()
        else:
            self.exchange.finish_response(frame)

    def _whole(self, status: int, headers: list[tuple[bytes, bytes]], payload: bytes) -> None:
        """A reply relayed in one piece, its head as Starlette's ``Response`` would make it."""
        if not (status < 200 or status in (204, 304)):
            headers.append((b"content-length", b"%d" % len(payload)))
        try:
            self.exchange.start_response(status, headers)
            self.started = True
        except ResponseError as exc:  # a neuron head no response may carry
            self._failed(exc)
            return
        self.exchange.finish_response(payload)

    def _error(self, error: CortexError) -> None:
        self._rendered(error_response(error))

    def _failed(self, exc: Exception) -> None:
        """A response we cannot give (a bug of ours, or a neuron head no response may carry):
        logged; the neuron's reply closed and the client's answered with a 500 if it has not
        begun, else cut, so neither waits for ever."""
        log.error("the direct relay of a request to %s failed", self.node.name, exc_info=exc)
        self.tap.finish(500, "internal_error")  # unless it has already been told how it ended
        if self.reply is not None:
            self.reply.close()
        else:
            self.upstream.close()
            self._node_done()
        if self.started:
            self.exchange.abort_response()
        else:
            internal = CortexError("internal error; see the daemon log", code="internal_error")
            self._rendered(error_response(internal))

    def _node_done(self) -> None:
        """The request no longer counts in flight on its node (before a reply took it over)."""
        if not self.settled:
            self.settled = True
            self.node.finished(self.model)

    def _rendered(self, response: Response) -> None:
        exchange = self.exchange
        exchange.start_response(response.status_code, response.raw_headers)
        self.started = True
        exchange.finish_response(bytes(response.body))

    # -- before the first byte ---------------------------------------------------------------

    def _to_lane(self, error: BaseException | None) -> None:
        """The attempt failed before the reply began: the lane serves the request from here."""
        node, model, tap = self.node, self.model, self.tap
        self._node_done()
        tried: frozenset[str] = frozenset()
        failovers = 0
        if self.gone:
            self.forwarder.forget(node, model)
            failovers = 1
        elif not isinstance(error, NoResponse):  # a reused connection the neuron had closed is not
            log.warning("node %s failed before responding: %s", node.name, error)
            tried = frozenset((node.name,))
            failovers = 1
        exchange = self.exchange
        if self.client_gone:
            tap.failovers = failovers
            tap.finish(499, "client_disconnected")
            return
        state = exchange.scope.setdefault("state", {})
        state[FIRST_ATTEMPT] = FirstAttempt(tap.started, node.name, tried, failovers)
        exchange.to_app()
