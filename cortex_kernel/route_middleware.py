"""Middleware that wraps only the routes under some path prefixes, whichever part mounted them.

A part's ``middleware`` wraps the whole app, so it runs on every request, the gateway's relayed
ones included, even when it only cares about a few paths (the console's guard of its own routes,
its tap on the admin API's answers). Applied to the matching routes instead, after routing, it
costs the other requests nothing: the relay lane answers its requests before the router, and the
router hands every other path to an unwrapped route.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute


@dataclass(frozen=True)
class RouteMiddleware:
    """``middleware`` around every route whose path is one of ``prefixes`` or lies below one."""

    prefixes: tuple[str, ...]
    middleware: Middleware

    def covers(self, path: str) -> bool:
        return any(path == prefix or path.startswith(prefix.rstrip("/") + "/") for prefix in self.prefixes)


def wrap_routes(routes: Sequence[BaseRoute], scoped: Sequence[RouteMiddleware]) -> list[BaseRoute]:
    """``routes`` with each one that a ``scoped`` entry covers replaced by a copy whose app is wrapped
    (the first entry outermost); the routes given are not changed."""
    if not scoped:
        return list(routes)
    wrapped: list[BaseRoute] = []
    for route in routes:
        if isinstance(route, (Route, WebSocketRoute, Mount)):
            layers = [entry.middleware for entry in scoped if entry.covers(route.path)]
            if layers:
                app = route.app
                for cls, args, kwargs in reversed(layers):
                    app = cls(app, *args, **kwargs)
                route = copy.copy(route)
                route.app = app
        wrapped.append(route)
    return wrapped
