"""The router seam: which ready replica of a model serves one request, and in what order to fail over.

The gateway knows the ready replicas of a model and, per request, a few routing hints (a
session key, a request class, a fingerprint of the prompt's leading prefix); it asks the
configured router (``[routing] strategy``, or a model's ``routing`` in ``models.toml``) for the
replicas in the order to try. A coding agent resends a long prefix on every turn, so sending a
session back to the replica that holds its KV cache is worth seconds per turn; *how* to weigh
that against load is the router's business, and a plugin may bring its own.

The kernel keeps the rules every router must keep, as it does for evictors
(:mod:`cortex_kernel.eviction`), so a third-party router cannot break them: only the replicas it
was shown are tried, each at most once, and a replica it leaves out is still tried after the ones
it named (a router orders; it cannot make a ready model unservable). A router that raises or names
anything else is logged and its answer filtered.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import msgspec

log = logging.getLogger(__name__)

# The request classes a gateway forwards to the neuron (``x-cortex-request-class``); anything
# else, or nothing, is ``main``.
REQUEST_CLASSES = ("main", "subagent", "compaction", "auxiliary")
DEFAULT_REQUEST_CLASS = "main"


class RouteHints(msgspec.Struct, frozen=True, kw_only=True):
    """What a request says about itself that a router may use; every field is optional.

    ``session_key`` names a conversation (a session header, OpenAI ``user``, Anthropic
    ``metadata.user_id``), ``prompt_cache_key`` is OpenAI's explicit cache-routing key,
    ``fingerprint`` a digest of the prompt's leading prefix, and ``request_class`` one of
    :data:`REQUEST_CLASSES`.
    """

    session_key: str | None = None
    request_class: str | None = None
    fingerprint: str | None = None
    prompt_cache_key: str | None = None


class Replica(msgspec.Struct, frozen=True, kw_only=True):
    """One ready replica of the model, as a router sees it.

    ``in_flight`` is live: the gateway's own count of the requests it has sent there for this
    model and not yet seen finish (requests queued at the neuron included), updated as each
    starts and ends. ``polled_in_flight`` and ``polled_queued`` are the neuron's last report
    (every poll interval; they include other gateways' requests, and a finished request still
    counts until the next poll). ``engine`` holds the engine's own gauges where the harness
    reports them (vLLM: ``kv_cache_usage_ratio``, ``requests_waiting``, ``requests_running``).
    """

    name: str
    in_flight: int = 0
    polled_in_flight: int = 0
    polled_queued: int = 0
    engine: dict[str, float] = msgspec.field(default_factory=dict)

    @property
    def polled_load(self) -> int:
        return self.polled_in_flight + self.polled_queued


class RoutingFacts(msgspec.Struct, frozen=True, kw_only=True):
    """The routing facts of one request: what every router is given.

    ``session_key`` is the first key the request carries in the documented order (a configured
    session header, then OpenAI ``prompt_cache_key`` / ``user``, then Anthropic
    ``metadata.user_id``), or ``None``; ``fingerprint`` digests the prompt's leading prefix
    (system prompt, tools, first messages) when there is one; ``replicas`` are the routable
    ready replicas, by name.
    """

    model: str
    session_key: str | None = None
    fingerprint: str | None = None
    request_class: str = DEFAULT_REQUEST_CLASS
    replicas: tuple[Replica, ...] = ()


class RouteChoice(msgspec.Struct, frozen=True, kw_only=True):
    """A router's answer: replica names in the order to try, and a short outcome label for the
    ``cortex_gateway_routing_decisions_total`` metric (a router may return a plain list instead)."""

    order: tuple[str, ...]
    outcome: str = "ranked"


@runtime_checkable
class Router(Protocol):
    """A routing strategy, named by ``[routing] strategy`` or a model's ``routing``."""

    name: str

    def route(self, facts: RoutingFacts) -> RouteChoice | Sequence[str]:
        """The names of ``facts.replicas`` in the order to try (best first)."""
        ...


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """What the kernel made of a router's answer: the order to try and the outcome to count."""

    order: tuple[str, ...]
    outcome: str


def least_loaded_order(replicas: Sequence[Replica]) -> tuple[str, ...]:
    """Fewest requests first (the neuron's last report plus what the gateway sent since), ties by
    name: the fallback when a router fails, and the ``least_loaded`` router itself."""
    ranked = sorted(replicas, key=lambda r: (r.polled_load + r.in_flight, r.name))
    return tuple(r.name for r in ranked)


def checked_route(router: Router, facts: RoutingFacts) -> Decision:
    """Ask ``router`` and enforce the rules: only offered replicas, each once, none left out.

    A name that is not offered or repeats is dropped (and logged); offered replicas the router
    left out follow its list in least-loaded order, so failover can still reach them. A router
    that raises is logged and the request is routed least-loaded with the outcome ``error``.
    """
    offered = {r.name for r in facts.replicas}
    try:
        answer = router.route(facts)
    except Exception:
        log.exception("router %r failed; routing %s least-loaded", router.name, facts.model)
        return Decision(order=least_loaded_order(facts.replicas), outcome="error")
    if isinstance(answer, RouteChoice):
        names, outcome = answer.order, answer.outcome
    else:
        names, outcome = tuple(answer), "ranked"
    order: list[str] = []
    refused: list[str] = []
    for name in names:
        if name in offered and name not in order:
            order.append(name)
        else:
            refused.append(name)
    if refused:
        log.warning(
            "router %r named replicas it was not offered or named twice for %s: %s (ignored)",
            router.name,
            facts.model,
            refused,
        )
        outcome = "refused"
    if len(order) < len(offered):
        order.extend(n for n in least_loaded_order(facts.replicas) if n not in order)
    return Decision(order=tuple(order), outcome=outcome)
