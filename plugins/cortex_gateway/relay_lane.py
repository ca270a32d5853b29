"""The relay routes as kernel lanes: answered in front of Starlette's middleware and router.

A relayed request went through Starlette's error middleware, every plugin's middleware, the
exception middleware, the router and the route's request wrapper before reaching
:class:`Forwarder`, and every chunk of its reply went back through the ``send`` wrappers some of
them add. A relay route needs only the auth, the routing headers and whatever plugin middleware
watches it (the console's capture, when on), and the rendering of errors, so each is a lane
(:mod:`cortex_kernel.lanes`): the kernel dispatches a ``POST`` to it first and wraps it only in
the middleware that watches its path. Measured in ``docs/performance.md``.

The lane renders errors as the app's exception handlers do: a :class:`CortexError` in OpenAI's
envelope, a client that left during its upload as 499, anything else as a logged 500 whose body
does not leak the exception (what Starlette's error middleware did for these routes).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from cortex_kernel.app import error_response
from cortex_kernel.errors import CortexError

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]


class RelayLane:
    """One relay route as a raw ASGI app: the endpoint's response, or its error rendered."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self.endpoint(Request(scope, receive, send))
        except CortexError as exc:  # rendered as the app's exception handler renders it
            response = error_response(exc)
        except ClientDisconnect:
            # As the app's handler does: nobody to answer, and not the daemon's fault.
            log.debug("client left during its upload: POST %s", scope["path"])
            response = Response(status_code=499)
        except Exception as exc:  # as the app's handler for the unexpected does
            log.exception("unhandled error on POST %s", scope["path"], exc_info=exc)
            response = error_response(
                CortexError("internal error; see the daemon log", code="internal_error")
            )
        await response(scope, receive, send)
