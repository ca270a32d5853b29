"""OpenAI pass-through: forward the body bytes, stream the reply back unchanged.

Only ``model`` and ``stream`` are decoded from the request (and ``model`` is rewritten only when
the client used an alias). Client credentials are never forwarded; the gateway presents its own
neuron token. The upstream timeout is per read (a stall), never a total cap, so long
generations are not cut off. If a node fails before sending its first byte, the request is
retried on another ready node.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from cortex_gateway.fleet import Node
from cortex_gateway.placement import Placement
from cortex_kernel.bodies import read_body
from cortex_kernel.config.schema import Catalogue
from cortex_kernel.errors import BadRequest, UnprocessableEntity, UpstreamError

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


class RoutingFields(msgspec.Struct):
    """The only fields the gateway reads from an OpenAI request."""

    model: str
    stream: bool = False


_routing_decoder = msgspec.json.Decoder(RoutingFields)


def routing_fields(body: bytes) -> RoutingFields:
    try:
        return _routing_decoder.decode(body)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `")
        param = path.rstrip("`").removeprefix("$.") or None
        if "missing required field" in message:
            raise BadRequest("request body needs a 'model'", code="missing_model", param="model") from exc
        raise UnprocessableEntity(f"invalid request: {message}", param=param) from exc
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed JSON body: {exc}", code="invalid_json") from exc


class Forwarder:
    """Sends OpenAI requests to neurons and relays their answers."""

    def __init__(
        self,
        placement: Placement,
        catalogue: Catalogue,
        session: aiohttp.ClientSession,
        headers: dict[str, str],
        *,
        max_body_bytes: int,
        stall_timeout_s: float,
        max_attempts: int = 3,
    ) -> None:
        self.placement = placement
        self.catalogue = catalogue
        self.session = session
        self.headers = headers
        self.max_body_bytes = max_body_bytes
        self.timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=stall_timeout_s)
        self.max_attempts = max_attempts

    def resolve(self, model: str) -> str:
        return self.catalogue.aliases.get(model, model)

    async def handle(self, request: Request, path: str) -> Response:
        body = await read_body(request, self.max_body_bytes)
        fields = routing_fields(body)
        model = self.resolve(fields.model)
        if model != fields.model:
            document = msgspec.json.decode(body)
            document["model"] = model
            body = msgspec.json.encode(document)
        reply = await self.open(path, model, body)
        if fields.stream and reply.status == 200:
            return StreamingResponse(reply.chunks(), status_code=reply.status, headers=dict(reply.headers))
        # A whole JSON reply (or an error) is relayed in one piece: cheaper than a stream.
        payload = await reply.read()
        return Response(payload, status_code=reply.status, headers=dict(reply.headers))

    async def open(self, path: str, model: str, body: bytes) -> NeuronReply:
        """POST ``body`` to a node that serves ``model``, retrying another before the first byte."""
        tried: set[str] = set()
        last_error: Exception | None = None
        for _ in range(self.max_attempts):
            node = await self.placement.node_for(model, frozenset(tried))
            # Counted from before the request leaves, so a drain never misses a request in transit.
            node.in_flight[model] = node.in_flight.get(model, 0) + 1
            node.last_routed[model] = time.time()
            try:
                upstream = await self.session.post(
                    f"{node.endpoint}{path}", data=body, headers=self.headers, timeout=self.timeout
                )
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                node.in_flight[model] -= 1
                log.warning("node %s failed before responding: %s", node.name, exc)
                tried.add(node.name)
                last_error = exc
                continue
            except BaseException:
                node.in_flight[model] -= 1
                raise
            return NeuronReply(node, model, upstream)
        raise UpstreamError(f"no node answered for {model!r}: {last_error}", code="upstream_unavailable")


class NeuronReply:
    """An open reply from a neuron (satisfies :class:`cortex_kernel.dialect.UpstreamReply`).

    While it is open it counts as in flight on its node, so replica choice between polls sees
    the requests the gateway itself sent.
    """

    def __init__(self, node: Node, model: str, upstream: aiohttp.ClientResponse) -> None:
        self.node = node.name
        self._node = node
        self._model = model
        self._upstream = upstream
        self.status = upstream.status
        self.headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        self._open = True  # the caller counted this request in flight before sending it

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._upstream.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("stream from %s broke: %s", self.node, exc)
            raise UpstreamError(f"node {self.node} stopped answering: {exc}") from exc
        finally:
            self.close()

    async def read(self) -> bytes:
        try:
            return await self._upstream.read()
        finally:
            self.close()

    def close(self) -> None:
        if self._open:
            self._open = False
            self._node.in_flight[self._model] -= 1
            with contextlib.suppress(Exception):
                self._upstream.close()
