"""The relay routes as kernel lanes: answered in front of Starlette's middleware and router.

A relayed request went through Starlette's error middleware, every plugin's middleware, the
exception middleware, the router and the route's request wrapper before reaching
:class:`Forwarder`, and every chunk of its reply went back through the ``send`` wrappers some of
them add. A relay route needs only the auth, the routing headers and whatever plugin middleware
watches it (the console's capture, when on), and the rendering of errors, so each is a lane
(:mod:`cortex_kernel.lanes`): the kernel dispatches a ``POST`` to it first and wraps it only in
the middleware that watches its path. Measured in ``docs/performance.md``.

The lane renders errors with the app's own :func:`~cortex_kernel.app.render_error`, the function
its exception handlers call: a :class:`CortexError` in OpenAI's envelope, a client that left
during its upload as 499, anything else as a logged 500 whose body does not leak the exception
(what Starlette's error middleware did for these routes). The app's one other handler, for
Starlette's ``HTTPException`` (its router's 404 and 405), is not the lane's: a lane has no router,
and the relay endpoints raise none, so one would be a 500 here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from cortex_kernel.app import render_error

Endpoint = Callable[[Request], Awaitable[Response]]


class RelayLane:
    """One relay route as a raw ASGI app: the endpoint's response, or its error rendered."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self.endpoint(Request(scope, receive, send))
        except Exception as exc:  # rendered as the app's exception handlers render it
            response = render_error(exc, scope)
        await response(scope, receive, send)
