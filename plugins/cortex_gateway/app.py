"""Assembling the gateway: fleet, poller, placement, pass-through routes and the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cortex_gateway.catalogue_view import merged_models
from cortex_gateway.fleet import Fleet, Node
from cortex_gateway.placement import Placement
from cortex_gateway.poller import Poller
from cortex_gateway.proxy import Forwarder, NeuronReply
from cortex_kernel.config.errors import ConfigError
from cortex_kernel.config.schema import Catalogue, CortexConfig
from cortex_kernel.eviction import Evictor
from cortex_kernel.kernel import AppPart, Kernel
from cortex_kernel.plugins import PluginError

_encode = msgspec.json.Encoder().encode


def json_response(body: object, status: int = 200) -> Response:
    return Response(_encode(body), status_code=status, media_type="application/json")


class GatewayUpstream:
    """The :class:`cortex_kernel.dialect.Upstream` handed to dialect plugins."""

    def __init__(self, forwarder: Callable[[], Forwarder], fleet: Fleet, catalogue: Catalogue) -> None:
        self._forwarder = forwarder
        self._fleet = fleet
        self._catalogue = catalogue

    def resolve(self, model: str) -> str:
        return self._catalogue.aliases.get(model, model)

    async def open(self, path: str, model: str, body: bytes) -> NeuronReply:
        return await self._forwarder().open(path, self.resolve(model), body)

    def models(self) -> list[dict[str, Any]]:
        return merged_models(self._fleet, self._catalogue)


def select_evictor(kernel: Kernel, strategy: str) -> Evictor:
    """The evictor named by ``[eviction] strategy``; a configuration error if none is."""
    offered = [e for result in kernel.pm.hook.register_evictors() if result for e in result]
    names = [e.name for e in offered]
    if len(names) != len(set(names)):
        raise PluginError(f"two evictors share a name: {sorted(names)}; block one plugin")
    for evictor in offered:
        if evictor.name == strategy:
            return evictor
    raise ConfigError(
        f"unknown eviction strategy {strategy!r}",
        source=kernel.config.sources.get("eviction.strategy", "default").removeprefix("file "),
        key="eviction.strategy",
        expected="one of " + ", ".join(repr(n) for n in sorted(names)) if names else "an evictor plugin",
    )


def gateway_part(kernel: Kernel) -> AppPart:
    config: CortexConfig = kernel.config.value
    catalogue = kernel.config.catalogue
    fleet = Fleet([Node(name=n.name, endpoint=n.endpoint.rstrip("/")) for n in config.neurons])
    headers = {"content-type": "application/json"}
    if config.gateway.neuron_token:
        headers["authorization"] = f"Bearer {config.gateway.neuron_token}"
    state: dict[str, object] = {}
    dialects = [d for result in kernel.pm.hook.register_dialects() if result for d in result]
    evictor = select_evictor(kernel, config.eviction.strategy)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=1024, limit_per_host=512, keepalive_timeout=60)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            poller = Poller(fleet, session, headers)
            placement = Placement(fleet, catalogue, session, headers, evictor=evictor)
            state["forwarder"] = Forwarder(
                placement,
                catalogue,
                session,
                headers,
                max_body_bytes=config.gateway.max_body_bytes,
                stall_timeout_s=config.gateway.stream_stall_timeout_s,
            )
            state["placement"] = placement
            await poller.poll_once()
            poller.start()
            try:
                yield
            finally:
                await poller.stop()

    def forwarder() -> Forwarder:
        value = state["forwarder"]
        assert isinstance(value, Forwarder)
        return value

    async def chat(request: Request) -> Response:
        return await forwarder().handle(request, "/v1/chat/completions")

    async def completions(request: Request) -> Response:
        return await forwarder().handle(request, "/v1/completions")

    async def embeddings(request: Request) -> Response:
        return await forwarder().handle(request, "/v1/embeddings")

    async def models(request: Request) -> Response:
        entries = merged_models(fleet, catalogue)
        for dialect in dialects:
            rendered = dialect.render_models(request, entries)
            if rendered is not None:
                return rendered
        return json_response({"object": "list", "data": entries})

    async def health(request: Request) -> Response:
        nodes = list(fleet)
        up = len(fleet.up_nodes())
        status = "ok" if nodes and up == len(nodes) else "degraded" if up else "impaired"
        ready = {m for n in fleet.up_nodes() for m, model in n.models.items() if model.state == "ready"}
        return json_response(
            {
                "status": status,
                "nodes": {"up": up, "total": len(nodes)},
                "models": {"ready": len(ready), "catalogue": len(catalogue.models)},
            }
        )

    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/", health, methods=["GET", "HEAD"]),
    ]
    upstream = GatewayUpstream(forwarder, fleet, catalogue)
    for dialect in dialects:
        routes.extend(dialect.routes(upstream))
    return AppPart(name="gateway", routes=routes, lifespan=lifespan)
