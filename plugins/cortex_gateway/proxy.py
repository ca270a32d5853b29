"""OpenAI pass-through: forward the body bytes, stream the reply back unchanged.

Only ``model`` and ``stream`` are decoded from the request (and ``model`` is rewritten only when
the client used an alias, without decoding the other fields: their values are copied as they came,
so a value the gateway need not understand can never fail here). Client credentials are never
forwarded; the gateway presents its own neuron token. The upstream timeout is per read (a stall),
never a total cap, so long generations are not cut off. If a node fails before sending its first
byte, the request is retried on another ready node.

This is the gateway's hot path, so it is written close to the metal: requests go out through
:mod:`cortex_gateway.neuron_http` and streams come back through :class:`RelayStream`, a raw ASGI
response with one task per request instead of Starlette's task group and generator
(``docs/performance.md`` has the measurements behind both).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from cortex_gateway.fleet import Node
from cortex_gateway.neuron_http import NeuronHTTPError, NeuronPool, NeuronResponse
from cortex_gateway.placement import Placement
from cortex_gateway.route_hints import HintReader, body_key, fingerprint
from cortex_gateway.spliced_body import SplicedBody
from cortex_gateway.tap import RequestTap
from cortex_kernel.bodies import receive_body, too_deep
from cortex_kernel.config.schema import Catalogue
from cortex_kernel.errors import (
    BadRequest,
    CortexError,
    UnprocessableEntity,
    UpstreamError,
    openai_error_body,
)
from cortex_kernel.events import EventBus
from cortex_kernel.routing import RouteHints
from cortex_kernel.splice import Splice, splice_of
from cortex_kernel.validation import error_location

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
        "date",
        "server",
    }
)


SSE_DONE = b"data: [DONE]\n\n"
# Where a request the direct route tried first carries that attempt into the app (scope["state"]).
FIRST_ATTEMPT = "cortex_gateway.first_attempt"


class FirstAttempt(msgspec.Struct, frozen=True):
    """What the direct route's attempt left for the lane to go on from: when the request began,
    the node it tried, the nodes to avoid (one that failed before answering) and the failovers
    counted so far."""

    started: float
    node: str
    tried: frozenset[str] = frozenset()
    failovers: int = 0


class RoutingFields(msgspec.Struct):
    """The only fields the gateway reads from an OpenAI request. The routing hints are kept as
    :class:`msgspec.Raw` (skipped, not parsed, in the same pass) and read only when a router
    needs them, so a value of the wrong type there is ignored for routing, never refused."""

    model: str
    stream: bool = False
    prompt_cache_key: msgspec.Raw = msgspec.Raw(b"")
    user: msgspec.Raw = msgspec.Raw(b"")
    messages: msgspec.Raw = msgspec.Raw(b"")
    tools: msgspec.Raw = msgspec.Raw(b"")


_routing_decoder = msgspec.json.Decoder(RoutingFields)
_fields_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])


def routing_fields(body: bytes) -> RoutingFields:
    try:
        return _routing_decoder.decode(body)
    except msgspec.ValidationError as exc:
        where = error_location(exc)
        if where.missing_field:
            raise BadRequest("request body needs a 'model'", code="missing_model", param="model") from exc
        raise UnprocessableEntity(f"invalid request: {where.problem}", param=where.path or None) from exc
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed JSON body: {exc}", code="invalid_json") from exc
    except RecursionError:
        raise too_deep() from None


def with_model(body: bytes, model: str) -> bytes:
    """``body`` with its top-level ``model`` replaced and every other value copied byte for byte.

    The values are decoded as :class:`msgspec.Raw` (skipped, not parsed), so a number out of range
    or an invalid UTF-8 byte in a field the gateway does not read reaches the neuron unchanged,
    to be judged there exactly as without an alias. The body already passed
    :func:`routing_fields`, which skips the same values, so this cannot fail on them; should it,
    that is still the client's malformed body.
    """
    try:
        fields = _fields_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed JSON body: {exc}", code="invalid_json") from exc
    except RecursionError:
        raise too_deep() from None
    fields["model"] = msgspec.Raw(msgspec.json.encode(model))
    return msgspec.json.encode(fields)


class Forwarder:
    """Sends OpenAI requests to neurons and relays their answers."""

    def __init__(
        self,
        placement: Placement,
        catalogue: Catalogue,
        pool: NeuronPool,
        headers: dict[str, str],
        *,
        max_body_bytes: int,
        stall_timeout_s: float,
        max_attempts: int = 3,
        events: EventBus | None = None,
        hints: HintReader | None = None,
    ) -> None:
        self.hints = hints or HintReader(fingerprint_bytes=4096)
        self.events = events or EventBus()
        self.placement = placement
        self.catalogue = catalogue
        self.pool = pool
        self.header_block = b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items())
        self.max_body_bytes = max_body_bytes
        self.stall = stall_timeout_s
        self.max_attempts = max_attempts
        # Replies still open, so a drain can end each with its error event before the grace is
        # over; added and removed once per request, never touched per chunk.
        self.open_replies: set[NeuronReply] = set()

    def interrupt_all(self, error: CortexError) -> int:
        """End every open reply with ``error`` (the gateway is about to stop); how many there were."""
        replies = list(self.open_replies)
        for reply in replies:
            reply.interrupt(error)
        return len(replies)

    def label(self, model: str) -> str:
        """``model`` if the fleet knows it, else ``unknown``: metric labels stay a bounded set."""
        if self.catalogue.get(model) is not None or any(model in n.models for n in self.placement.fleet):
            return model
        return "unknown"

    async def handle(self, request: Request, path: str) -> Response:
        state = request.scope.get("state")
        first: FirstAttempt | None = state.get(FIRST_ATTEMPT) if state else None
        started = first.started if first is not None else time.perf_counter()
        try:
            body = await receive_body(request.scope, request.receive, self.max_body_bytes)
            fields, model, body = self.routed(body)
        except CortexError as exc:
            RequestTap(self.events, dialect="openai", endpoint=path, model="unknown", started=started).finish(
                exc.status, exc.code
            )
            raise
        hints = self.body_hints(fields) if self.wants_hints(model) else None
        reply = await self.open(
            path, model, body, started=started, streamed=fields.stream, hints=hints, first=first
        )
        if fields.stream and reply.status == 200:
            return RelayStream(reply)
        # A whole JSON reply (or an error) is relayed in one piece: cheaper than a stream.
        payload = await reply.read()
        return Response(payload, status_code=reply.status, headers=dict(reply.headers))

    def routed(self, body: bytes) -> tuple[RoutingFields, str, bytes]:
        """An OpenAI body's routing fields, the model it resolves to, and the body to send (its
        ``model`` rewritten where the client named an alias); a :class:`CortexError` for a body
        the gateway refuses."""
        fields = routing_fields(body)
        model = self.catalogue.resolve(fields.model, self.placement.is_ready, self.placement.can_place)
        return fields, model, (with_model(body, model) if model != fields.model else body)

    def resolved_hints(self, model: str, hints: RouteHints | None, body: bytes) -> RouteHints:
        """``hints`` with the request's routing headers, and a prompt fingerprint from ``body``
        where the model's router reads one and nothing else keys the request."""
        return self.hints.resolve(hints, body if self.wants_hints(model) else None)

    def new_tap(
        self, path: str, model: str, *, dialect: str = "openai", started: float | None, streamed: bool
    ) -> RequestTap:
        """The tap of a request for ``model`` (labelled as the metrics label it)."""
        tap = RequestTap(
            self.events,
            dialect=dialect,
            endpoint=path,
            model=self.label(model),
            started=started if started is not None else time.perf_counter(),
        )
        tap.streamed = streamed
        return tap

    @staticmethod
    def sending(node: Node, model: str) -> None:
        """Count a request in flight on ``node`` from before it leaves, so a drain or a replica
        choice between polls never misses one in transit (``node.finished`` gives it back)."""
        node.in_flight[model] = node.in_flight.get(model, 0) + 1
        node.last_routed[model] = time.time()

    def wants_hints(self, model: str) -> bool:
        routers = self.placement.routers
        return routers is not None and routers.wants_hints(model)

    def body_hints(self, fields: RoutingFields) -> RouteHints:
        """The hints an OpenAI body carries; the prefix fingerprint only when it has no key."""
        key, user = body_key(fields.prompt_cache_key), body_key(fields.user)
        headers = self.hints.header_hints()
        if key or user or (headers is not None and headers.session_key):
            return RouteHints(prompt_cache_key=key, session_key=user)
        print_ = fingerprint(fields.messages, fields.tools, self.hints.fingerprint_bytes)
        return RouteHints(fingerprint=print_ or "")  # "" : looked, found none; never look again

    async def open(
        self,
        path: str,
        model: str,
        body: bytes,
        *,
        dialect: str = "openai",
        started: float | None = None,
        streamed: bool = False,
        hints: RouteHints | None = None,
        first: FirstAttempt | None = None,
    ) -> NeuronReply:
        """POST ``body`` to a node that serves ``model``, retrying another before the first byte;
        ``hints`` (and the request's routing headers) go to the model's router; ``first``, the
        direct route's attempt that failed before the first byte, counts as the first try."""
        tap = self.new_tap(path, model, dialect=dialect, started=started, streamed=streamed)
        try:
            return await self._open(path, model, body, tap, self.resolved_hints(model, hints, body), first)
        except CortexError as exc:
            tap.finish(exc.status, exc.code)
            raise

    async def _open(
        self,
        path: str,
        model: str,
        body: bytes,
        tap: RequestTap,
        hints: RouteHints,
        first: FirstAttempt | None = None,
    ) -> NeuronReply:
        tried: set[str] = set()
        attempts = range(self.max_attempts)
        if first is not None:
            tried.update(first.tried)
            tap.node = first.node
            tap.failovers = first.failovers
            attempts = range(1 if first.failovers else 0, self.max_attempts)
        header_block = self.header_block_for(hints)
        last_error: Exception | None = None
        for attempt in attempts:
            waiting = time.perf_counter()
            node, cold = await self.placement.node_for_request(model, frozenset(tried), hints)
            tap.waited_s += time.perf_counter() - waiting
            tap.cold_start = tap.cold_start or cold
            tap.node = node.name
            self.sending(node, model)
            try:
                upstream = await self.pool.request(
                    node.origin, "POST", path, header_block, body, stall_timeout_s=self.stall
                )
            except (NeuronHTTPError, TimeoutError) as exc:
                node.finished(model)
                log.warning("node %s failed before responding: %s", node.name, exc)
                tried.add(node.name)
                tap.failovers += 1
                last_error = exc
                continue
            except BaseException:
                node.finished(model)
                raise
            if upstream.status == 404 and attempt + 1 < self.max_attempts:
                await self._gone(node, model, upstream)
                tap.failovers += 1
                last_error = NeuronHTTPError(f"node {node.name} no longer holds {model!r}")
                continue
            return NeuronReply(node, model, upstream, tap, self.open_replies)
        raise UpstreamError(f"no node answered for {model!r}: {last_error}", code="upstream_unavailable")

    def header_block_for(self, hints: RouteHints) -> bytes:
        """The header lines sent to the neuron with a request that has ``hints``."""
        if hints.request_class is None:
            return self.header_block
        # One of a fixed set of words: safe in a header.
        return self.header_block + b"x-cortex-request-class: " + hints.request_class.encode() + b"\r\n"

    async def _gone(self, node: Node, model: str, upstream: NeuronResponse) -> None:
        """A node answered 404 for a model it held at the last poll: place the request again.

        Between a poll and a request the model may have left the node (another gateway evicted
        it, an operator unloaded it). Every 404 a neuron gives on these routes means exactly
        that, so the client is not told a catalogue model does not exist: the node is shown
        without the model, and placement finds or loads another replica (on this node too).
        """
        try:
            with contextlib.suppress(NeuronHTTPError, TimeoutError):
                await upstream.read()  # a small error body; reading it keeps the connection
        finally:
            upstream.close()
            node.finished(model)
        self.forget(node, model)

    def forget(self, node: Node, model: str) -> None:
        """``node`` answered 404 for ``model``: show it without the model until the next poll."""
        log.info("node %s no longer holds %s; placing the request again", node.name, model)
        current = node.models.get(model)
        if current is not None and current.state == "ready":
            del node.models[model]

    def node_down(self, node: Node) -> None:
        """End what is in progress on ``node``, now declared down: requests waiting for their
        first byte fail over, and streams end with the error event of a neuron lost mid-stream."""
        self.pool.abort(node.origin, f"node {node.name} was declared down ({node.last_error})")


class RelayStream(Response):
    """A neuron's streamed reply relayed as a raw ASGI response.

    One loop moves whatever the neuron sent since the last write to the client in one ``send``;
    one small task watches for the client leaving and then closes the neuron's connection,
    which ends the loop and stops the generation. Where the server offers the ``cortex.splice``
    extension (:mod:`cortex_kernel.splice`) and no middleware wraps ``send``, the body is
    written from the neuron connection's read callback instead, and the client leaving closes
    the reply through the splice's callback: no loop and no watcher task. The reply is closed
    however the response ends, so the in-flight count and the connection stay honest.
    """

    def __init__(self, reply: NeuronReply) -> None:
        # Response.__init__ renders a body; a relayed stream has none to render.
        self.status_code = reply.status
        self.background = None
        self._reply = reply
        self.raw_headers = reply.raw_headers()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reply = self._reply
        start = {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        splice = splice_of(scope, send)
        if splice is not None:
            try:
                await send(start)
                await reply.relay_spliced(splice, send)
            finally:
                reply.close()
            return
        watcher = asyncio.get_running_loop().create_task(_close_on_disconnect(receive, reply))
        try:
            await send(start)
            await reply.relay(send)
        finally:
            watcher.cancel()
            reply.close()


async def _close_on_disconnect(receive: Receive, reply: NeuronReply) -> None:
    message: Message = {"type": ""}
    while message["type"] != "http.disconnect":
        message = await receive()
    reply.close()


class NeuronReply:
    """An open reply from a neuron (satisfies :class:`cortex_kernel.dialect.UpstreamReply`).

    While it is open it counts as in flight on its node, so replica choice between polls sees
    the requests the gateway itself sent.
    """

    def __init__(
        self,
        node: Node,
        model: str,
        upstream: NeuronResponse,
        tap: RequestTap,
        registry: set[NeuronReply] | None = None,
    ) -> None:
        self._tap = tap
        self.node = node.name
        self._node = node
        self._model = model
        self._upstream = upstream
        self.status = upstream.status
        self.headers = {k: v for k, v in upstream.headers if k not in HOP_BY_HOP}
        self._sse = self.headers.get("content-type", "").startswith("text/event-stream")
        self._open = True  # the caller counted this request in flight before sending it
        self._error: str | None = None
        self._interrupted: CortexError | None = None
        self._registry = registry
        if registry is not None:
            registry.add(self)

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers relayed to the client, as an ASGI response carries them."""
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]

    def interrupt(self, error: CortexError) -> None:
        """End the reply with ``error`` through the same path as a neuron lost mid-reply."""
        if self._open and self._interrupted is None:
            self._interrupted = error
            self._upstream.cut(error.message)

    def broken(self, exc: BaseException) -> CortexError:
        if self._interrupted is not None:
            self._error = self._interrupted.code
            return self._interrupted
        log.warning("reply from %s broke: %s", self.node, exc)
        self._error = "upstream_broken"
        return UpstreamError(f"node {self.node} stopped answering: {exc}")

    async def _next_chunk(self) -> bytes | None:
        """The next piece of the body, tapped (``None`` at its end); a broken reply as its error."""
        try:
            chunk = await self._upstream.next_piece()
        except (NeuronHTTPError, TimeoutError) as exc:
            raise self.broken(exc) from exc
        if chunk is not None:
            self._tap.chunk(chunk)
        return chunk

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        self._tap.streamed = True
        try:
            while (chunk := await self._next_chunk()) is not None:
                yield chunk
        finally:
            self.close()

    async def relay(self, send: Send) -> None:
        """Send the body to an ASGI client as it arrives (the hot loop of a streamed request).

        If the neuron goes away mid-stream and what was relayed so far ends on an SSE frame
        boundary, the client gets an error event and a clean end, as vLLM and the neuron send
        for a generation that fails, instead of a connection cut mid-body.
        """
        # No async generator step per chunk (the server's splice, where offered, has none at all).
        self._tap.streamed = True
        last = b"\n\n"
        try:
            while (chunk := await self._next_chunk()) is not None:
                last = chunk
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except CortexError as exc:
            await self._end_with_error(exc, last, send)
            return
        finally:
            self.close()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def relay_spliced(self, splice: Splice, send: Send) -> None:
        """:meth:`relay` through the server's splice: each read of the neuron's connection is
        tapped and written to the client from its ``data_received``, reading paused while the
        client is behind; this task only waits for the end (and the client leaving closes the
        reply, which ends that wait)."""
        self._tap.streamed = True
        body = SplicedBody(splice, self._tap.chunk, self._upstream)
        splice.on_lost(self.close)
        try:
            try:
                await self._upstream.divert(body.take)
            except (NeuronHTTPError, TimeoutError) as exc:
                raise self.broken(exc) from exc
        except CortexError as exc:
            await self._end_with_error(exc, body.last, send)
            return
        finally:
            splice.on_lost(None)
            self.close()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _end_with_error(self, exc: CortexError, last: bytes, send: Send) -> None:
        """End a relayed body that broke: an error event and a clean end where what was relayed
        ends on an SSE frame boundary, else ``exc`` raised (the connection is cut mid-body)."""
        self.close()
        frame = self.error_frame(exc, last)
        if frame is None:
            raise exc
        await send({"type": "http.response.body", "body": frame, "more_body": False})

    def error_frame(self, exc: CortexError, last: bytes) -> bytes | None:
        """The last bytes of a stream that broke with ``exc`` after ``last``: an SSE error event
        and ``[DONE]`` where ``last`` ends a frame, else ``None`` (only a cut can end it)."""
        if not (self._sse and last.endswith(b"\n\n")):
            return None
        return b"data: " + openai_error_body(exc) + b"\n\n" + SSE_DONE

    async def read(self) -> bytes:
        try:
            payload = await self._upstream.read()
        except (NeuronHTTPError, TimeoutError) as exc:
            raise self.broken(exc) from exc
        finally:
            self.close()
        self.took(payload)
        return payload

    def took(self, payload: bytes) -> None:
        """The whole body, read and relayed in one piece (the reply is closed): tap it, and end."""
        self.close()
        self._tap.chunk(payload)
        self._tap.finish(self.status, self._error_code())

    def _error_code(self) -> str | None:
        if self._error is not None:
            return self._error
        return None if self.status < 400 else f"upstream_{self.status}"

    def close(self) -> None:
        if self._open:
            self._open = False
            if self._registry is not None:
                self._registry.discard(self)
            self._node.finished(self._model)
            self._upstream.close()
            if self._tap.streamed or self._error is not None:
                failed = self._interrupted.status if self._interrupted is not None else 502
                self._tap.finish(self.status if self._error is None else failed, self._error_code())
