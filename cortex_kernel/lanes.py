"""Lanes: a few routes answered in front of the app, through only the middleware that watches them.

A request to an ordinary route passes Starlette's error middleware, every plugin's middleware,
the exception middleware, the router and the route's wrapper, and each chunk of its reply goes
back through the ``send`` wrappers some of them add. For the gateway's relay routes, which are
most of its traffic, that is a measurable share of the CPU per request (``docs/performance.md``,
issue #17). A part may therefore claim a ``(method, path)`` as a *lane*: an ASGI app that
answers those requests itself, errors included, dispatched before anything else.

Plugins' middleware still sees a lane's requests, unless it says it cannot act on them: a
middleware class with a ``watches(path) -> bool`` static or class method is left out of the
lanes whose path it does not watch, decided once at start-up, never per request. Middleware
without ``watches`` wraps every lane, exactly as it wraps the app, so a plugin that records
requests keeps seeing relayed ones without knowing lanes exist.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from cortex_kernel.direct import DirectRoute

LaneKey = tuple[str, str]  # (method, path)


def watches(middleware: Middleware, path: str) -> bool:
    """Whether ``middleware`` must see requests to ``path`` (yes unless its class says not)."""
    says = getattr(middleware.cls, "watches", None)
    return True if says is None else bool(says(path))


def wrap_lane(lane: ASGIApp, path: str, middleware: Sequence[Middleware]) -> ASGIApp:
    """``lane`` inside every middleware of ``middleware`` (outermost first) that watches ``path``."""
    app = lane
    for entry in reversed(middleware):
        if watches(entry, path):
            app = entry.cls(app, *entry.args, **entry.kwargs)
    return app


class LaneFront:
    """The outermost ASGI app: a request a lane claims goes to that lane, the rest to ``app``.

    ``direct`` holds the lanes' direct routes (:mod:`cortex_kernel.direct`) for a server that can
    call them; an ASGI server never sees them, and the lanes answer everything there.
    """

    def __init__(
        self,
        app: ASGIApp,
        lanes: Mapping[LaneKey, ASGIApp],
        direct: Mapping[LaneKey, DirectRoute] | None = None,
    ) -> None:
        self.app = app
        self.lanes = dict(lanes)
        self.direct = dict(direct or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            lane = self.lanes.get((scope["method"], scope["path"]))
            if lane is not None:
                await lane(scope, receive, send)
                return
        await self.app(scope, receive, send)


def direct_routes(app: ASGIApp) -> dict[LaneKey, DirectRoute]:
    """The direct routes ``app`` offers its server: a :class:`LaneFront`'s, else none."""
    return app.direct if isinstance(app, LaneFront) else {}
