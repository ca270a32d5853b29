"""The relay routes, dispatched ahead of Starlette's router and exception middleware.

A relayed request went through five ASGI layers before reaching :class:`Forwarder`
(the error middleware, the gateway's auth, the exception middleware, the router and the route's
request wrapper), and every chunk of its reply went back through the ``send`` wrapper that two
of them add. The relay routes need only the auth in front of them and the rendering of
:class:`CortexError`, so this lane sits just inside the auth: a ``POST`` to one of them is
answered here, anything else goes on to the router unchanged. Measured in
``docs/performance.md``.

The lane is an ``innermost`` middleware of the gateway's part: inside every plugin's
middleware, just around the router, so a plugin that watches requests (the console's capture)
still sees the relayed ones.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from cortex_kernel.app import error_response
from cortex_kernel.errors import CortexError

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]


class RelayLane:
    """Answer ``POST`` on the relay paths directly; hand everything else to ``app``."""

    def __init__(self, app: ASGIApp, routes: Mapping[str, Endpoint]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except CortexError as exc:  # rendered as the app's exception handler renders it
            response = error_response(exc)
        except ClientDisconnect:
            # As the app's handler does: nobody to answer, and not the daemon's fault.
            log.debug("client left during its upload: POST %s", scope["path"])
            response = Response(status_code=499)
        await response(scope, receive, send)
