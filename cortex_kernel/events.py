"""Request and lifecycle events: how the gateway tells metrics (and any other sink) what happened.

The gateway emits one :class:`RequestFinished` per request, however it ended, and one event per
lifecycle change. Sinks are plugins (``register_event_sinks``); they receive events
synchronously on the event loop and must return quickly (update counters, enqueue — never
block). A sink that raises is logged and skipped; it cannot break a request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Literal, Protocol, runtime_checkable

import msgspec

log = logging.getLogger(__name__)


class RequestFinished(msgspec.Struct, kw_only=True, frozen=True):
    """One client request, from arrival to its last byte.

    ``dialect`` is the name of the API the client spoke (``openai`` for the gateway's own routes,
    else the :class:`cortex_kernel.dialect.Dialect` plugin's ``name``). Times are seconds from the
    request's arrival. ``first_token_s`` is the first content byte of
    the reply (streamed or not); ``model`` is the concrete id (``unknown`` when the request named
    no model the fleet knows, so labels stay bounded). ``direct`` says the gateway answered it on
    its direct path (:mod:`cortex_kernel.direct`: from the sockets' callbacks, no ASGI task).
    """

    dialect: str
    endpoint: str
    model: str
    node: str | None
    status: int
    error: str | None = None
    streamed: bool = False
    duration_s: float
    first_token_s: float | None = None
    waited_s: float = 0.0
    cold_start: bool = False
    failovers: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    inter_token_s: tuple[float, ...] = ()
    direct: bool = False


class ModelLoaded(msgspec.Struct, kw_only=True, frozen=True):
    """A load that ended; ``error`` says why one failed (the node's message)."""

    node: str
    model: str
    seconds: float
    ok: bool
    error: str | None = None


class ModelUnloaded(msgspec.Struct, kw_only=True, frozen=True):
    node: str
    model: str
    reason: Literal["requested", "evicted", "idle"]
    strategy: str | None = None


class ModelSlept(msgspec.Struct, kw_only=True, frozen=True):
    """A model put to sleep on a node: to make room (``evicted``), after its idle TTL, by an
    operator (``requested``), or as a copy an operator's warm-up loaded (``warm_up``)."""

    node: str
    model: str
    reason: Literal["requested", "evicted", "idle", "warm_up"]
    strategy: str | None = None


class ModelWoken(msgspec.Struct, kw_only=True, frozen=True):
    """A sleeping model woken on its node (for a request, or by an operator)."""

    node: str
    model: str
    seconds: float
    ok: bool


class ThrashDetected(msgspec.Struct, kw_only=True, frozen=True):
    """A model placed back on a node it was evicted from less than ``thrash_window_s`` ago."""

    node: str
    model: str
    seconds_since_eviction: float


class ReplicaScaled(msgspec.Struct, kw_only=True, frozen=True):
    """A replica added to a hot model (``out``) or an idle one beyond ``min_replicas`` let go (``in``)."""

    node: str
    model: str
    direction: Literal["out", "in"]


class DefragRestarted(msgspec.Struct, kw_only=True, frozen=True):
    node: str


class PollFailed(msgspec.Struct, kw_only=True, frozen=True):
    """One failed poll: ``error`` is the kind (a label), ``reason`` the full message."""

    node: str
    error: str
    reason: str = ""


class RoutingDecided(msgspec.Struct, kw_only=True, frozen=True):
    """One routing decision: which router placed a request for ``model`` on ``node``, and how
    (``outcome``: e.g. ``affinity_hit``, ``moved_for_load``, ``fallback``, ``first_seen``,
    ``no_key``, ``ranked``; ``refused`` or ``error`` when the kernel overruled the router)."""

    model: str
    router: str
    outcome: str
    node: str


class DeviceSnapshot(msgspec.Struct, kw_only=True, frozen=True):
    index: int
    memory_used_bytes: int | None = None
    memory_free_bytes: int | None = None
    utilization_pct: int | None = None


class ModelSnapshot(msgspec.Struct, kw_only=True, frozen=True):
    model: str
    state: str
    in_flight: int
    queued: int
    last_used: float | None = None


class NodeSnapshot(msgspec.Struct, kw_only=True, frozen=True):
    node: str
    up: bool
    draining: bool
    last_poll: float | None = None
    last_error: str | None = None
    devices: tuple[DeviceSnapshot, ...] = ()
    models: tuple[ModelSnapshot, ...] = ()


class FleetPolled(msgspec.Struct, kw_only=True, frozen=True):
    """The fleet as the gateway sees it after each poll (every few seconds)."""

    nodes: tuple[NodeSnapshot, ...]


Event = (
    RequestFinished
    | ModelLoaded
    | ModelUnloaded
    | ModelSlept
    | ModelWoken
    | ThrashDetected
    | ReplicaScaled
    | DefragRestarted
    | PollFailed
    | FleetPolled
    | RoutingDecided
)


@runtime_checkable
class EventSink(Protocol):
    """Receives every event; must not block."""

    def handle(self, event: Event) -> None: ...


class EventBus:
    """Fans events out to sinks, isolating the emitter from a failing sink."""

    def __init__(self, sinks: Iterable[EventSink] = ()) -> None:
        self.sinks = list(sinks)

    def emit(self, event: Event) -> None:
        for sink in self.sinks:
            try:
                sink.handle(event)
            except Exception:
                log.exception("event sink %r failed on %s", sink, type(event).__name__)
