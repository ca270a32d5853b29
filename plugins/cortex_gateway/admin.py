"""The admin surface: fleet state, load/unload on a node, draining a node (used by the CLI)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from cortex_gateway.fleet import Fleet, Node
from cortex_gateway.placement import Placement, eligible
from cortex_gateway.warm_up import warm_up
from cortex_kernel.bodies import decode_body, decode_json, read_body
from cortex_kernel.config.schema import Catalogue, ModelProfile
from cortex_kernel.errors import BadRequest, CortexError, NotFound, Overloaded
from cortex_kernel.eviction import Victim

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode
# An admin body is a few fields; anything near this size is not one.
ADMIN_BODY_BYTES = 64 * 1024


class ModelOnNode(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model: str
    node: str | None = None


class Drain(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    drain: bool = True


class WarmUp(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /admin/warm-up``: which nodes (all when absent), and how much of each node's host
    budget to keep free for the sleeps of later evictions."""

    nodes: list[str] | None = None
    reserve_mb: int = msgspec.field(default=0)


def _json(body: Any, status: int = 200) -> Response:
    return Response(_encode(body), status_code=status, media_type="application/json")


class Admin:
    """Handlers bound to the gateway's fleet and placement."""

    def __init__(self, fleet: Fleet, catalogue: Catalogue, placement: Placement) -> None:
        self.fleet = fleet
        self.catalogue = catalogue
        self.placement = placement
        self._tasks: set[asyncio.Task[None]] = set()

    def _node(self, name: str) -> Node:
        node = self.fleet.nodes.get(name)
        if node is None:
            raise NotFound(
                f"unknown node {name!r}; nodes: {', '.join(self.fleet.nodes)}", code="node_not_found"
            )
        return node

    def node_json(self, node: Node) -> dict[str, Any]:
        return {
            "name": node.name,
            "endpoint": node.endpoint,
            "up": node.up,
            "draining": node.draining,
            "failures": node.failures,
            "last_error": node.last_error,
            "last_poll": node.last_poll,
            "devices": msgspec.to_builtins(node.devices()),
            "memory": {
                "budget_bytes": node.budget_bytes,
                "host_budget_bytes": node.host_budget_bytes,
                "host_free_bytes": self.placement.residency.host_free_bytes(node),
                "available_bytes": node.available_bytes,
                "free_bytes": self.placement.free_bytes(node),
            },
            "lifecycle_cycles": node.cycles,
            "models": [
                {
                    "id": model.id,
                    "state": model.state,
                    "in_flight": node.model_load(model.id),
                    "last_used": node.last_used(model.id),
                    "memory_bytes": self.placement.declared_bytes(node, model.id),
                    **self.placement.residency.countdowns(node, model.id),
                }
                for model in node.models.values()
            ],
        }

    async def fleet_state(self, request: Request) -> Response:
        return _json(
            {
                "nodes": [self.node_json(node) for node in self.fleet],
                "cold_starts": self.placement.cold_starts,
                "evictions": self.placement.evictions,
                "defrag_restarts": self.placement.defrag_restarts,
                "sleeps": self.placement.residency.sleeps,
                "wakes": self.placement.residency.wakes,
                "thrash_events": self.placement.residency.thrash_events,
                "scale_outs": self.placement.residency.scale_outs,
                "scale_ins": self.placement.residency.scale_ins,
            }
        )

    async def load(self, request: Request) -> Response:
        body = await decode_body(request, ModelOnNode)
        model = self.catalogue.resolve(body.model)
        profile = self.catalogue.get(model)
        if profile is None:
            raise NotFound(f"model {model!r} is not in the catalogue", code="model_not_found", param="model")
        if body.node is not None:
            node = self._node(body.node)
            if not eligible(node, profile):
                raise BadRequest(f"{model!r} cannot run on {node.name!r} (down, draining or not eligible)")
            target = node
            victims = next((v for n, v in self.placement.plan(profile) if n is node), [])
        else:
            plans = self.placement.plan(profile)
            if not plans:
                raise Overloaded(f"no node can host {model!r} now", code="no_capacity", retry_after=10)
            target, victims = plans[0]
        existing = target.models.get(model)
        if existing is not None and existing.state in ("loading", "ready"):
            return _json({"model": model, "node": target.name, "state": existing.state})
        self._spawn(self._load(target, profile, victims))
        return _json({"model": model, "node": target.name, "state": "loading"}, 202)

    async def _load(self, node: Node, profile: ModelProfile, victims: list[Victim]) -> None:
        try:
            await self.placement.residency.make_room_and_place(node, victims, profile)
        except CortexError as exc:
            log.warning("admin load of %s on %s failed: %s", profile.id, node.name, exc.message)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def unload(self, request: Request) -> Response:
        body = await decode_body(request, ModelOnNode)
        model = self.catalogue.resolve(body.model)
        nodes = [self._node(body.node)] if body.node else [n for n in self.fleet if model in n.models]
        for node in nodes:
            await self.placement.unload_on(node, model)
        return _json({"model": model, "nodes": [n.name for n in nodes], "state": "unloaded"})

    def _model_on(self, node: Node, name: str) -> str:
        """The concrete id of ``name`` (an alias resolved) as held on ``node``, or the admin 404."""
        model = self.catalogue.resolve(name)
        if model not in node.models:
            known = self.catalogue.get(model) is not None
            raise NotFound(
                f"model {model!r} is not on node {node.name!r}" if known else f"unknown model {model!r}",
                code="model_not_loaded" if known else "model_not_found",
                param="model",
            )
        return model

    async def sleep(self, request: Request) -> Response:
        """Put a model to sleep on a node (its weights to the node's host RAM)."""
        node = self._node(request.path_params["name"])
        model = self._model_on(node, request.path_params["model"])
        await self.placement.residency.sleep_on(node, model)
        return _json({"model": model, "node": node.name, "state": "sleeping"})

    async def wake(self, request: Request) -> Response:
        """Wake a model where it sleeps (joins a wake in progress)."""
        node = self._node(request.path_params["name"])
        model = self._model_on(node, request.path_params["model"])
        await self.placement.residency.wake_on(node, model)
        return _json({"model": model, "node": node.name, "state": "ready"})

    async def warm_up(self, request: Request) -> Response:
        """Warm the sleep tier (``cortex_gateway.warm_up``); answers once every node is done,
        with the copies each now holds asleep."""
        raw = await read_body(request, ADMIN_BODY_BYTES)  # an empty body: every node, no reserve
        body = decode_json(raw, WarmUp) if raw else WarmUp()
        if body.reserve_mb < 0:
            raise BadRequest("reserve_mb must be 0 or more", code="invalid_request", param="reserve_mb")
        names = body.nodes if body.nodes is not None else list(self.fleet.nodes)
        nodes = [self._node(name) for name in dict.fromkeys(names)]
        slept = await warm_up(self.placement, nodes, body.reserve_mb * 1024 * 1024)
        return _json({"nodes": [{"node": name, "slept": models} for name, models in slept.items()]})

    async def drain(self, request: Request) -> Response:
        node = self._node(request.path_params["name"])
        body = await decode_body(request, Drain) if await request.body() else Drain()
        node.draining = body.drain
        return _json(self.node_json(node))
