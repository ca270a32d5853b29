"""Which router orders a model's ready replicas, and asking it for one request.

The router for a model is its ``routing`` in ``models.toml``, else ``[routing] strategy``. Each
call builds the routing facts from what the gateway knows *now*: its own live in-flight count per
(node, model), changed as each request starts and ends, beside the neuron's last polled counts
and engine gauges. The kernel's rule (:func:`cortex_kernel.routing.checked_route`) keeps a router
to the replicas it was shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from cortex_gateway.fleet import Node
from cortex_kernel.config.errors import ConfigError
from cortex_kernel.config.schema import Catalogue
from cortex_kernel.events import EventBus, RoutingDecided
from cortex_kernel.kernel import Kernel
from cortex_kernel.plugins import PluginError
from cortex_kernel.routing import (
    DEFAULT_REQUEST_CLASS,
    Replica,
    RouteChoice,
    RouteHints,
    Router,
    RoutingFacts,
    checked_route,
    least_loaded_order,
)

DEFAULT_STRATEGY = "least_loaded"


class KernelLeastLoaded:
    """``least_loaded`` when no plugin offers it (the routers plugin blocked): the kernel's own
    fallback order, so a gateway with the default strategy always starts."""

    name = DEFAULT_STRATEGY

    def route(self, facts: RoutingFacts) -> RouteChoice:
        return RouteChoice(order=least_loaded_order(facts.replicas), outcome="ranked")


def engine_gauges(reported: dict[str, Any] | msgspec.UnsetType) -> dict[str, float] | None:
    """The numeric engine figures of a ``/health`` model entry (vLLM's), or ``None`` if it has none."""
    if not isinstance(reported, dict):
        return None
    return {
        k: float(v) for k, v in reported.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }


def replica(node: Node, model_id: str) -> Replica:
    """``node`` as a router sees it for ``model_id``."""
    reported = node.models.get(model_id)
    return Replica(
        name=node.name,
        in_flight=node.in_flight.get(model_id, 0),
        polled_in_flight=reported.in_flight if reported else 0,
        polled_queued=reported.queued if reported else 0,
        engine=reported.engine if reported and reported.engine else {},
    )


class RouterTable:
    """The routers by name, the default one, and each model's override."""

    def __init__(self, routers: dict[str, Router], default: str, per_model: dict[str, str]) -> None:
        self.routers = routers
        self.default = routers[default]
        self.per_model = {model: routers[name] for model, name in per_model.items()}

    def router_for(self, model_id: str) -> Router:
        return self.per_model.get(model_id, self.default)

    def wants_hints(self, model_id: str) -> bool:
        """Whether the model's router may use session keys and fingerprints: every router but
        ``least_loaded``, for which the gateway does not read them at all."""
        return self.router_for(model_id).name != DEFAULT_STRATEGY

    def asks(self, model_id: str, ready: Sequence[Node]) -> bool:
        """Whether the model's router is asked: always when there is a choice, and for a single
        replica too unless the router is ``least_loaded`` (a session router remembers where a
        request that failed over went; least-loaded has nothing to learn, so the common
        single-node case stays as cheap as before)."""
        return len(ready) > 1 or self.router_for(model_id).name != DEFAULT_STRATEGY

    def choose(
        self, model_id: str, ready: Sequence[Node], hints: RouteHints | None, events: EventBus
    ) -> Node:
        """The replica to try first among ``ready``, as the model's router orders them."""
        router = self.router_for(model_id)
        hints = hints or RouteHints()
        facts = RoutingFacts(
            model=model_id,
            session_key=hints.session_key,
            fingerprint=hints.fingerprint,
            request_class=hints.request_class or DEFAULT_REQUEST_CLASS,
            replicas=tuple(replica(node, model_id) for node in ready),
        )
        decision = checked_route(router, facts)
        first = decision.order[0]
        events.emit(RoutingDecided(model=model_id, router=router.name, outcome=decision.outcome, node=first))
        return next(node for node in ready if node.name == first)


def select_routers(kernel: Kernel, catalogue: Catalogue) -> RouterTable:
    """The routers offered by plugins, checked against ``[routing] strategy`` and each model's
    ``routing``; an unknown name is a configuration error that names the key."""
    offered: list[Router] = [
        r for result in kernel.pm.hook.register_routers(kernel=kernel) if result for r in result
    ]
    names = [r.name for r in offered]
    if len(names) != len(set(names)):
        raise PluginError(f"two routers share a name: {sorted(names)}; block one plugin")
    routers: dict[str, Router] = {r.name: r for r in offered}
    routers.setdefault(DEFAULT_STRATEGY, KernelLeastLoaded())
    expected = "one of " + ", ".join(repr(n) for n in sorted(routers))
    strategy = kernel.config.value.routing.strategy
    if strategy not in routers:
        raise ConfigError(
            f"unknown routing strategy {strategy!r}",
            source=kernel.config.sources.get("routing.strategy", "default").removeprefix("file "),
            key="routing.strategy",
            expected=expected,
        )
    per_model: dict[str, str] = {}
    for profile in catalogue.models:
        if profile.routing is None:
            continue
        if profile.routing not in routers:
            raise ConfigError(
                f"model {profile.id!r}: unknown routing strategy {profile.routing!r}",
                source="models.toml",
                key="models[].routing",
                expected=expected,
            )
        per_model[profile.id] = profile.routing
    return RouterTable(routers, strategy, per_model)
