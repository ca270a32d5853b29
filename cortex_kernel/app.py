"""The app factory: plugin contributions in, one Starlette app out.

The app is assembled once, declaratively, from the :class:`AppPart` objects that plugins return
from ``register_app_parts``; nothing is added after start-up. Errors that escape a handler are
rendered in OpenAI's envelope here; dialect plugins render their own envelopes in their routes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Scope

from cortex_kernel.direct import DirectRoute
from cortex_kernel.errors import CortexError, NotFound, openai_error_body, retry_headers
from cortex_kernel.kernel import AppPart, Kernel, ListenerName
from cortex_kernel.lanes import LaneFront, LaneKey, watches, wrap_lane
from cortex_kernel.plugins import ENV_BLOCK, PluginError
from cortex_kernel.route_middleware import wrap_routes

log = logging.getLogger(__name__)


def error_response(error: CortexError) -> Response:
    """Render ``error`` as an OpenAI-envelope JSON response with its retry hint."""
    return Response(
        openai_error_body(error),
        status_code=error.status,
        media_type="application/json",
        headers=retry_headers(error),
    )


def render_error(exc: Exception, scope: Scope) -> Response:
    """The response for an error that escaped a handler: the one rendering of the app's handlers.

    The app's exception handlers call it, and so does any lane (:mod:`cortex_kernel.lanes`)
    that answers ahead of the app's error middleware, so a route answers its errors the same
    whichever way it is served: a :class:`CortexError` in OpenAI's envelope; a client that left
    while sending its body as 499 with one debug line, not a traceback (each such disconnect
    used to log two, which made a loop of aborted uploads cheap log amplification; the 499,
    nginx's "client closed request", goes nowhere but marks it in any access log); anything else
    as a logged 500 whose body does not leak the exception.
    """
    if isinstance(exc, CortexError):
        return error_response(exc)
    if isinstance(exc, ClientDisconnect):
        log.debug("client left during its upload: %s %s", scope["method"], scope["path"])
        return Response(status_code=499)
    log.exception("unhandled error on %s %s", scope["method"], scope["path"], exc_info=exc)
    return error_response(CortexError("internal error; see the daemon log", code="internal_error"))


async def _rendered_error(request: Request, exc: Exception) -> Response:
    return render_error(exc, request.scope)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(NotFound(f"no route for {request.method} {request.url.path}"))
    if exc.status_code == 405:
        return error_response(
            CortexError(
                f"method {request.method} is not allowed on {request.url.path}",
                status=405,
                type="invalid_request_error",
                code="method_not_allowed",
            )
        )
    return error_response(CortexError(exc.detail, status=exc.status_code, type="invalid_request_error"))


def collect_parts(kernel: Kernel) -> list[AppPart]:
    """Ask every plugin for its parts for ``kernel.role``; flatten in plugin-call order."""
    results = kernel.pm.hook.register_app_parts(role=kernel.role, kernel=kernel)
    # pluggy calls the most recently registered plugin first; reverse for registration order.
    return [part for result in reversed(results) if result for part in result]


def require_role_part(kernel: Kernel, parts: list[AppPart]) -> None:
    """Refuse to start a daemon whose own API is missing: the part named for the role (the
    ``gateway`` or ``neuron`` plugin's) must be among ``parts``. Without it the daemon would
    bind its port and answer 404 to everything, which looks like a healthy process."""
    if not any(part.name == kernel.role and part.listener == "api" for part in parts):
        raise PluginError(
            f"no plugin serves the {kernel.role} API: the essential {kernel.role!r} plugin is blocked "
            f"or not installed (check --block-plugin, [plugins] block and {ENV_BLOCK})"
        )


def _check_conflicts(parts: list[AppPart]) -> list[BaseRoute]:
    claimed: dict[tuple[str, str], str] = {}
    routes: list[BaseRoute] = []
    for part in parts:
        for route in part.routes:
            if isinstance(route, Route):
                for method in route.methods or {"GET"}:
                    key = (method, route.path)
                    if key in claimed:
                        raise PluginError(
                            f"{part.name!r} and {claimed[key]!r} both claim {method} {route.path}"
                        )
                    claimed[key] = part.name
            routes.append(route)
    return routes


def _lanes(parts: list[AppPart], middleware: list[Middleware]) -> dict[LaneKey, ASGIApp]:
    """Every part's lanes, each inside the middleware that watches its path; one claim each."""
    lanes: dict[LaneKey, ASGIApp] = {}
    owner: dict[LaneKey, str] = {}
    for part in parts:
        for key, lane in part.lanes.items():
            if key in owner:
                raise PluginError(f"{part.name!r} and {owner[key]!r} both claim the lane {key[0]} {key[1]}")
            owner[key] = part.name
            lanes[key] = wrap_lane(lane, key[1], middleware)
    return lanes


def _direct(parts: list[AppPart], middleware: list[Middleware]) -> dict[LaneKey, DirectRoute]:
    """Every part's direct routes that may be used: each must pair with a lane of its own part,
    and is dropped (the lane serves everything) where another part's middleware watches its
    path, since a direct route cannot run that middleware."""
    direct: dict[LaneKey, DirectRoute] = {}
    for part in parts:
        others = [mw for other in parts if other is not part for mw in other.middleware]
        for key, route in part.direct.items():
            if key not in part.lanes:
                raise PluginError(f"{part.name!r} has a direct route for {key[0]} {key[1]} but no lane there")
            watchers = [getattr(mw.cls, "__name__", repr(mw.cls)) for mw in others if watches(mw, key[1])]
            if watchers:
                log.info("%s %s is served by its lane only: %s watches it", *key, ", ".join(watchers))
                continue
            direct[key] = route
    return direct


def create_app(kernel: Kernel, parts: list[AppPart] | None = None, listener: ListenerName = "api") -> ASGIApp:
    """Build the ASGI app for ``kernel.role`` and ``listener`` from plugin parts (or ``parts``):
    Starlette's, with the parts' lanes in front of it when there are any."""
    parts = collect_parts(kernel) if parts is None else parts
    parts = [part for part in parts if part.listener == listener]
    routes = wrap_routes(_check_conflicts(parts), [rm for part in parts for rm in part.route_middleware])
    middleware = [mw for part in parts for mw in part.middleware]
    lifespans = [part.lifespan for part in parts if part.lifespan is not None]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for factory in lifespans:
                await stack.enter_async_context(factory())
            yield

    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            CortexError: _rendered_error,
            HTTPException: _http_error,
            ClientDisconnect: _rendered_error,
            Exception: _rendered_error,
        },
    )
    lanes = _lanes(parts, middleware)
    direct = _direct(parts, middleware)  # checked even where no part has a lane
    return LaneFront(app, lanes, direct) if lanes else app
