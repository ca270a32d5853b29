"""The objects the kernel hands to plugins: which daemon is starting, with what configuration."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal

import pluggy
from starlette.middleware import Middleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from cortex_kernel.config.loader import LoadedConfig
from cortex_kernel.direct import DirectRoute
from cortex_kernel.drain import Drain
from cortex_kernel.route_middleware import RouteMiddleware
from cortex_kernel.stash import Stash

Role = Literal["gateway", "neuron"]
ListenerName = Literal["api", "metrics"]

Lifespan = Callable[[], AbstractAsyncContextManager[None]]


@dataclass(frozen=True)
class Kernel:
    """Start-up context passed to ``register_app_parts``.

    ``role`` says which daemon is being assembled; ``config`` is that daemon's validated
    configuration (``LoadedConfig[CortexConfig]`` for the gateway, ``LoadedConfig[NeuronConfig]``
    for a neuron), including the model catalogue; ``pm`` lets a plugin call further hooks, such as
    the neuron calling ``register_harnesses``; ``drain`` is set when the daemon starts its
    graceful shutdown, so plugins can turn readiness off and end open streams in time;
    ``stash`` holds per-kernel plugin state under typed keys (:mod:`cortex_kernel.stash`), for
    objects that two of a plugin's hooks must share. ``worker`` is which of the gateway's
    ``[gateway] workers`` processes this is (0 to N-1; always 0 for one process or a neuron).
    """

    role: Role
    config: LoadedConfig[Any]
    pm: pluggy.PluginManager
    drain: Drain = field(default_factory=Drain, compare=False)
    stash: Stash = field(default_factory=Stash, compare=False, repr=False)
    worker: int = 0


@dataclass(frozen=True)
class AppPart:
    """One plugin's contribution to a daemon's ASGI app.

    ``routes`` are mounted in plugin order; ``middleware`` wraps the whole app (outermost first);
    ``lanes`` are ASGI apps that answer one ``(method, path)`` each, in front of the router and
    Starlette's middleware, inside only the parts' middleware that watches that path
    (:mod:`cortex_kernel.lanes`: the gateway's relay routes, its hot path); ``direct`` pairs some
    of those lanes with a direct route, called from the server's callbacks for the requests it
    can answer at once (:mod:`cortex_kernel.direct`); ``route_middleware``
    wraps only the routes (any part's) under its path prefixes, for middleware that has no
    business with the other requests (:mod:`cortex_kernel.route_middleware`); ``lifespan`` is entered
    at start-up, in plugin order, and exited in reverse at shutdown, so a part can start background
    tasks and release them. ``listener`` says which app the part belongs to: the API
    (``gateway.listen`` / the neuron's ``listen``) or the gateway's separate metrics listener
    (``gateway.metrics_listen``).
    """

    name: str
    routes: list[BaseRoute] = field(default_factory=list)
    middleware: list[Middleware] = field(default_factory=list)
    lanes: dict[tuple[str, str], ASGIApp] = field(default_factory=dict)
    direct: dict[tuple[str, str], DirectRoute] = field(default_factory=dict)
    route_middleware: list[RouteMiddleware] = field(default_factory=list)
    lifespan: Lifespan | None = None
    listener: ListenerName = "api"
