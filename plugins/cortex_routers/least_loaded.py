"""``least_loaded``: the gateway's original policy, kept exactly as it was."""

from __future__ import annotations

from cortex_kernel.routing import RouteChoice, RoutingFacts, least_loaded_order


class LeastLoaded:
    """Fewest requests first (the neuron's last report plus what this gateway sent since), ties
    by name. Blind to sessions and caches: the right choice for short, unrelated requests."""

    name = "least_loaded"

    def route(self, facts: RoutingFacts) -> RouteChoice:
        return RouteChoice(order=least_loaded_order(facts.replicas), outcome="ranked")
