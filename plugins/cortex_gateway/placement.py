"""Choosing the node for a request: a ready replica, a load in progress, or a cold load.

One load per model however many requests arrive together (single flight); the requests that
wait for it are bounded in number and time and then answered 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import msgspec

from cortex_gateway.fleet import Fleet, Node, NodeModel
from cortex_kernel.config.schema import Catalogue, ModelProfile
from cortex_kernel.errors import CortexError, NotFound, Overloaded

log = logging.getLogger(__name__)
MIB = 1024 * 1024


def _free_bytes(node: Node) -> int | None:
    devices = node.devices()
    if not devices:
        return None
    return sum(int(d.get("memory_free_bytes", 0)) for d in devices)


def eligible(node: Node, profile: ModelProfile) -> bool:
    """Whether ``profile`` may run on ``node`` at all (ignoring what is loaded there now)."""
    if not node.up or (profile.pinned_on and node.name not in profile.pinned_on):
        return False
    devices = node.devices()
    if profile.min_devices == 0:
        return True
    big_enough = [
        d
        for d in devices
        if profile.min_device_vram_mb is None
        or d.get("memory_total_bytes", 0) >= profile.min_device_vram_mb * MIB
    ]
    return len(big_enough) >= profile.min_devices


def fits_free(node: Node, profile: ModelProfile) -> bool:
    """Whether ``profile``'s declared memory fits what the node reports free now."""
    if profile.vram_mb is None:
        return True
    free = _free_bytes(node)
    return free is None or free >= profile.vram_mb * MIB


class Placement:
    """Finds or makes a ready replica of a model."""

    def __init__(
        self,
        fleet: Fleet,
        catalogue: Catalogue,
        session: aiohttp.ClientSession,
        headers: dict[str, str],
        *,
        load_timeout_s: float = 1800.0,
        max_waiters: int = 512,
    ) -> None:
        self.fleet = fleet
        self.catalogue = catalogue
        self.session = session
        self.headers = headers
        self.load_timeout_s = load_timeout_s
        self.max_waiters = max_waiters
        self._loads: dict[str, asyncio.Task[Node]] = {}
        self._waiters = 0
        self.cold_starts = 0

    async def node_for(self, model_id: str, exclude: frozenset[str] = frozenset()) -> Node:
        """A node where ``model_id`` is ready, loading it first if needed."""
        node = self._ready(model_id, exclude)
        if node is not None:
            return node
        task = self._loads.get(model_id)
        if task is None:
            profile = self.catalogue.get(model_id)
            if profile is None:
                if any(model_id in n.models for n in self.fleet):
                    raise Overloaded(
                        f"model {model_id!r} is not ready yet", code="model_loading", retry_after=2
                    )
                raise NotFound(f"model {model_id!r} does not exist", code="model_not_found", param="model")
            task = asyncio.get_running_loop().create_task(
                self._cold_load(profile, exclude), name=f"place {model_id}"
            )
            self._loads[model_id] = task
            task.add_done_callback(lambda _: self._loads.pop(model_id, None))
        if self._waiters >= self.max_waiters:
            raise Overloaded(
                f"too many requests waiting for {model_id!r} to load", code="load_queue_full", retry_after=5
            )
        self._waiters += 1
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.load_timeout_s)
        except TimeoutError:
            raise Overloaded(
                f"model {model_id!r} is still loading", code="model_loading", retry_after=10
            ) from None
        finally:
            self._waiters -= 1

    def _ready(self, model_id: str, exclude: frozenset[str]) -> Node | None:
        ready = [n for n in self.fleet.replicas(model_id) if n.name not in exclude]
        if not ready:
            return None
        return min(ready, key=lambda node: (node.model_load(model_id), node.name))

    def candidates(self, profile: ModelProfile, exclude: frozenset[str] = frozenset()) -> list[Node]:
        """Eligible nodes, a free fit before a tight one, then by name."""
        nodes = [n for n in self.fleet if n.name not in exclude and eligible(n, profile)]
        return sorted(nodes, key=lambda n: (not fits_free(n, profile), n.name))

    async def _cold_load(self, profile: ModelProfile, exclude: frozenset[str]) -> Node:
        # A load already running on some node (e.g. started by an operator) is joined, not repeated.
        loading = [n for n in self.fleet.replicas(profile.id, ("loading",)) if n.name not in exclude]
        nodes = loading + [n for n in self.candidates(profile, exclude) if n not in loading]
        if not nodes:
            raise Overloaded(f"no node can host {profile.id!r} now", code="no_capacity", retry_after=10)
        last: CortexError | None = None
        for node in nodes:
            try:
                await self.load_on(node, profile)
                self.cold_starts += 1
                return node
            except CortexError as exc:
                log.warning("loading %s on %s failed: %s", profile.id, node.name, exc.message)
                last = exc
        assert last is not None
        raise last

    async def load_on(self, node: Node, profile: ModelProfile) -> None:
        """Ask ``node`` to load ``profile`` and wait until it is ready there."""
        node.models[profile.id] = NodeModel(id=profile.id, state="loading")
        body = {"profile": msgspec.to_builtins(profile), "wait": True}
        timeout = aiohttp.ClientTimeout(total=self.load_timeout_s, connect=10)
        try:
            async with self.session.post(
                f"{node.endpoint}/models/load", json=body, headers=self.headers, timeout=timeout
            ) as reply:
                payload: dict[str, Any] = await reply.json(content_type=None)
                if reply.status >= 400:
                    message = payload.get("error", {}).get("message", f"HTTP {reply.status}")
                    node.models.pop(profile.id, None)
                    raise CortexError(f"node {node.name}: {message}", status=502, code="load_failed")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            node.models.pop(profile.id, None)
            raise CortexError(
                f"node {node.name} unreachable while loading: {exc}", status=502, code="load_failed"
            ) from exc
        node.models[profile.id] = NodeModel(
            id=profile.id,
            state="ready",
            context_length=payload.get("context_length"),
            memory_bytes=payload.get("memory_bytes"),
        )
