"""Assembling the gateway: fleet, poller, placement, pass-through, admin, auth and lifespan.

Objects that need the running event loop (the aiohttp session and what uses it) are built in
the lifespan and kept on one :class:`Runtime`; routes are declared up front and reach them
through it, so the app is assembled once and never changed after start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from cortex_gateway.admin import Admin
from cortex_gateway.auth import ClientKeys, GatewayAuth
from cortex_gateway.catalogue_view import merged_models, model_entry
from cortex_gateway.direct_relay import DirectRelay
from cortex_gateway.fleet import Fleet, Node
from cortex_gateway.model_events import model_events
from cortex_gateway.model_status import entry_status, listing, props_for
from cortex_gateway.neuron_http import NeuronPool
from cortex_gateway.placement import Placement
from cortex_gateway.poller import Poller
from cortex_gateway.proxy import Forwarder
from cortex_gateway.relay_lane import RelayLane
from cortex_gateway.residency import Residency
from cortex_gateway.route_hints import HintReader, RoutingHeaders
from cortex_gateway.routing_table import select_routers
from cortex_kernel.catalogue_entry import CatalogueEntry
from cortex_kernel.config.errors import ConfigError
from cortex_kernel.config.schema import Catalogue, CortexConfig
from cortex_kernel.dialect import Dialect, UpstreamReply
from cortex_kernel.direct import DirectRoute
from cortex_kernel.drain import Drain
from cortex_kernel.errors import Overloaded
from cortex_kernel.events import EventBus
from cortex_kernel.eviction import Evictor
from cortex_kernel.kernel import AppPart, Kernel
from cortex_kernel.node_wire import REQUEST_CLASS_HEADER
from cortex_kernel.plugins import PluginError
from cortex_kernel.routing import RouteHints

_encode = msgspec.json.Encoder().encode
MODEL_EVENTS_TICK_S = 1.0  # how often /models/sse compares the fleet's model states
log = logging.getLogger(__name__)


def json_response(body: object, status: int = 200) -> Response:
    return Response(_encode(body), status_code=status, media_type="application/json")


@dataclass
class Runtime:
    """What the gateway builds at start-up; ``None`` only before the lifespan has run."""

    placement: Placement | None = None
    forwarder: Forwarder | None = None
    admin: Admin | None = None

    def ready(self) -> tuple[Placement, Forwarder, Admin]:
        if self.placement is None or self.forwarder is None or self.admin is None:
            raise Overloaded("the gateway is starting", code="starting", retry_after=1)
        return self.placement, self.forwarder, self.admin


class GatewayUpstream:
    """The :class:`cortex_kernel.dialect.Upstream` handed to one dialect plugin."""

    def __init__(self, runtime: Runtime, fleet: Fleet, catalogue: Catalogue, dialect: str) -> None:
        self._dialect = dialect
        self._runtime = runtime
        self._fleet = fleet
        self._catalogue = catalogue

    def resolve(self, model: str) -> str:
        placement = self._runtime.placement
        if placement is None:
            return self._catalogue.resolve(model)
        return self._catalogue.resolve(model, placement.is_ready, placement.can_place)

    async def open(
        self, path: str, model: str, body: bytes, hints: RouteHints | None = None
    ) -> UpstreamReply:
        _, forwarder, _ = self._runtime.ready()
        return await forwarder.open(path, self.resolve(model), body, dialect=self._dialect, hints=hints)

    def models(self) -> list[CatalogueEntry]:
        return merged_models(self._fleet, self._catalogue)

    def model(self, model: str) -> CatalogueEntry | None:
        return model_entry(self._fleet, self._catalogue, model)


async def end_streams_at_cutoff(drain: Drain, forwarder: Forwarder) -> None:
    """Shortly before the shutdown grace runs out, end every open reply with an error event in
    its client's dialect, so no stream is cut without an ending when the server stops."""
    await drain.wait_cutoff()
    ended = forwarder.interrupt_all(
        Overloaded("the gateway is shutting down; retry the request", code="shutting_down", retry_after=1)
    )
    if ended:
        log.info("ended %d open replies at the end of the shutdown grace", ended)


def select_evictor(kernel: Kernel, strategy: str) -> Evictor:
    """The evictor named by ``[eviction] strategy``; a configuration error if none is."""
    offered = [e for result in kernel.pm.hook.register_evictors() if result for e in result]
    names = [e.name for e in offered]
    if len(names) != len(set(names)):
        raise PluginError(f"two evictors share a name: {sorted(names)}; block one plugin")
    for evictor in offered:
        if evictor.name == strategy:
            chosen: Evictor = evictor
            return chosen
    raise ConfigError(
        f"unknown eviction strategy {strategy!r}",
        source=kernel.config.sources.get("eviction.strategy", "default").removeprefix("file "),
        key="eviction.strategy",
        expected="one of " + ", ".join(repr(n) for n in sorted(names)) if names else "an evictor plugin",
    )


def gateway_part(kernel: Kernel) -> AppPart:
    config: CortexConfig = kernel.config.value
    catalogue = kernel.config.catalogue
    fleet = Fleet(
        [Node(name=n.name, endpoint=n.endpoint.rstrip("/")) for n in config.neurons],
        down_after=config.gateway.down_after_failures,
    )
    headers = {"content-type": "application/json"}
    if config.gateway.neuron_token:
        headers["authorization"] = f"Bearer {config.gateway.neuron_token}"
    dialects: list[Dialect] = [
        d for result in kernel.pm.hook.register_dialects(kernel=kernel) if result for d in result
    ]
    evictor = select_evictor(kernel, config.eviction.strategy)
    routers = select_routers(kernel, catalogue)
    sinks = kernel.pm.hook.register_event_sinks(role="gateway", kernel=kernel)
    events = EventBus(sink for result in sinks if result for sink in result)
    runtime = Runtime()

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=1024, limit_per_host=512, keepalive_timeout=60)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            poller = Poller(
                fleet,
                session,
                headers,
                interval_s=config.gateway.poll_interval_s,
                timeout_s=config.gateway.poll_timeout_s,
                events=events,
            )
            placement = Placement(
                fleet,
                catalogue,
                session,
                headers,
                evictor=evictor,
                refresh=poller.refresh,
                reread=poller.poll_node,
                defrag_after_cycles=config.eviction.defrag_after_cycles,
                events=events,
                routers=routers,
                residency=Residency(config.residency),
            )
            runtime.placement = placement
            poller.after_poll = placement.maybe_defrag
            pool = NeuronPool()
            runtime.forwarder = Forwarder(
                placement,
                catalogue,
                pool,
                headers,
                max_body_bytes=config.gateway.max_body_bytes,
                stall_timeout_s=config.gateway.stream_stall_timeout_s,
                events=events,
                hints=HintReader(config.routing.fingerprint_bytes),
            )
            runtime.admin = Admin(fleet, catalogue, placement)
            forwarder = runtime.forwarder

            def node_down(node: Node) -> None:
                # A frozen neuron keeps its sockets open and never answers: let go of it now.
                placement.node_down(node)
                forwarder.node_down(node)

            poller.on_down = node_down
            await poller.poll_once()
            poller.start()
            placement.residency.start()
            ender = asyncio.get_running_loop().create_task(
                end_streams_at_cutoff(kernel.drain, runtime.forwarder), name="drain-cutoff"
            )
            try:
                yield
            finally:
                ender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ender
                await placement.residency.stop()
                await poller.stop()
                await pool.close()

    def forward(path: str) -> Any:
        async def endpoint(request: Request) -> Response:
            _, forwarder, _ = runtime.ready()
            return await forwarder.handle(request, path)

        return endpoint

    def relay(path: str) -> Callable[[Request], Awaitable[Response]]:
        """:func:`forward` for the relay lane, which awaits what it returns: the handler's own
        coroutine, so no frame of this one stays in the request's await chain (Starlette's route
        needs a coroutine function, and keeps :func:`forward`'s)."""

        def endpoint(request: Request) -> Awaitable[Response]:
            _, forwarder, _ = runtime.ready()
            return forwarder.handle(request, path)

        return endpoint

    def admin(name: str) -> Any:
        async def endpoint(request: Request) -> Response:
            _, _, handlers = runtime.ready()
            response: Response = await getattr(handlers, name)(request)
            return response

        return endpoint

    async def models(request: Request) -> Response:
        entries: list[CatalogueEntry] = [listing(entry) for entry in merged_models(fleet, catalogue)]
        for dialect in dialects:
            rendered = dialect.render_models(request, entries)
            if rendered is not None:
                return rendered
        return json_response({"object": "list", "data": entries})

    async def props(request: Request) -> Response:
        return json_response(props_for(request, merged_models(fleet, catalogue)))

    async def model_event_stream(request: Request) -> Response:
        def snapshot() -> dict[str, str]:
            return {entry.id: entry_status(entry) for entry in merged_models(fleet, catalogue)}

        body = model_events(snapshot, lambda: kernel.drain.active, tick_s=MODEL_EVENTS_TICK_S)
        return StreamingResponse(body, media_type="text/event-stream", headers={"cache-control": "no-cache"})

    async def health(request: Request) -> Response:
        nodes = list(fleet)
        up = len(fleet.up_nodes())
        status = "ok" if nodes and up == len(nodes) else "degraded" if up else "impaired"
        ready = {m for n in fleet.up_nodes() for m, model in n.models.items() if model.state == "ready"}
        body: dict[str, Any] = {
            "status": status,
            "nodes": {"up": up, "total": len(nodes)},
            "models": {"ready": len(ready), "catalogue": len(catalogue.models)},
        }
        if kernel.config.value.gateway.workers > 1:
            body["worker"] = kernel.worker  # which process answered: each has its own poller
        return json_response(body)

    async def live(request: Request) -> Response:
        return json_response({"status": "live"})

    async def ready(request: Request) -> Response:
        if kernel.drain.active:
            return json_response({"status": "draining"}, 503)
        if runtime.forwarder is None or not any(node.last_poll is not None for node in fleet):
            return json_response({"status": "starting"}, 503)  # no neuron has answered a poll yet
        return json_response({"status": "ready"})

    relayed = {path: forward(path) for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")}
    routes: list[BaseRoute] = [
        *(Route(path, endpoint, methods=["POST"]) for path, endpoint in relayed.items()),
        Route("/v1/models", models, methods=["GET"]),
        Route("/props", props, methods=["GET"]),
        Route("/models/sse", model_event_stream, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/", health, methods=["GET", "HEAD"]),
        Route("/admin/fleet", admin("fleet_state"), methods=["GET"]),
        Route("/admin/models/load", admin("load"), methods=["POST"]),
        Route("/admin/models/unload", admin("unload"), methods=["POST"]),
        Route("/admin/nodes/{name}/drain", admin("drain"), methods=["POST"]),
        Route("/admin/warm-up", admin("warm_up"), methods=["POST"]),
        Route("/admin/nodes/{name}/models/{model}/sleep", admin("sleep"), methods=["POST"]),
        Route("/admin/nodes/{name}/models/{model}/wake", admin("wake"), methods=["POST"]),
    ]
    for dialect in dialects:
        routes.extend(dialect.routes(GatewayUpstream(runtime, fleet, catalogue, dialect.name)))
    middleware = [
        Middleware(GatewayAuth, auth=config.auth, events=events, dialects=dialects),
        Middleware(
            RoutingHeaders,
            session_headers=config.routing.session_headers,
            class_header=config.routing.request_class_header,
        ),
    ]
    # In front of Starlette, inside the middleware that watches them (the console's capture does).
    lanes: dict[tuple[str, str], ASGIApp] = {("POST", p): RelayLane(relay(p)) for p in relayed}
    direct: dict[tuple[str, str], DirectRoute] = {}
    if config.gateway.direct_relay:
        keys = ClientKeys(config.auth)
        routing = config.routing
        named = (*routing.session_headers, REQUEST_CLASS_HEADER, routing.request_class_header)
        hint_headers = frozenset(name.lower().encode("latin-1") for name in named)
        direct = {("POST", p): DirectRelay(p, lambda: runtime.forwarder, keys, hint_headers) for p in relayed}
    return AppPart(
        name="gateway", routes=routes, middleware=middleware, lanes=lanes, direct=direct, lifespan=lifespan
    )
