"""``RouteMiddleware``: middleware around the routes under some prefixes only, whichever part's,
and how that differs from a part's ``middleware`` that ``watches`` some paths."""

from __future__ import annotations

from pluggy import PluginManager
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from cortex_kernel.app import create_app
from cortex_kernel.config.loader import LoadedConfig
from cortex_kernel.config.schema import CortexConfig
from cortex_kernel.kernel import AppPart, Kernel
from cortex_kernel.route_middleware import RouteMiddleware, wrap_routes


class Mark:
    """Records each path it is called for, under its name."""

    def __init__(self, app: ASGIApp, name: str, calls: list[tuple[str, str]]) -> None:
        self.app, self.name, self.calls = app, name, calls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls.append((self.name, scope["path"]))
        await self.app(scope, receive, send)


class Watching(Mark):
    """:class:`Mark` that watches only the paths under ``/p``."""

    @staticmethod
    def watches(path: str) -> bool:
        return path.startswith("/p")


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def lane(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"lane"})


def test_only_the_routes_under_a_prefix_are_wrapped_and_the_first_entry_is_outermost() -> None:
    calls: list[tuple[str, str]] = []
    routes = [Route(path, ok) for path in ("/console", "/console/api/state", "/consoles", "/v1/models")]
    scoped = [
        RouteMiddleware(("/console",), Middleware(Mark, name="outer", calls=calls)),
        RouteMiddleware(("/console/api",), Middleware(Mark, name="inner", calls=calls)),
    ]
    wrapped = wrap_routes(routes, scoped)
    client = TestClient(Starlette(routes=wrapped))
    for path in ("/console", "/console/api/state", "/consoles", "/v1/models"):
        assert client.get(path).text == "ok"
    assert calls == [
        ("outer", "/console"),
        ("outer", "/console/api/state"),
        ("inner", "/console/api/state"),
    ]
    calls.clear()
    TestClient(Starlette(routes=routes)).get("/console")  # the routes given are left as they were
    assert calls == []


def test_watches_narrows_only_the_lanes_while_route_middleware_sees_only_routed_requests() -> None:
    """Why the two mechanisms are not one: ``watches`` leaves a whole-app middleware out of the
    lanes whose path it does not watch but in front of every other request; ``route_middleware``
    wraps only the routes under its prefixes, after routing, so it never sees a lane, a 404 or a
    405, even under its prefix."""
    calls: list[tuple[str, str]] = []
    part = AppPart(
        name="scopes",
        routes=[Route("/p/x", ok, methods=["POST"]), Route("/q", ok, methods=["POST"])],
        middleware=[Middleware(Watching, name="watches", calls=calls)],
        lanes={("POST", "/p/lane"): lane, ("POST", "/q/lane"): lane},
        route_middleware=[RouteMiddleware(("/p",), Middleware(Mark, name="route", calls=calls))],
    )
    kernel = Kernel(
        role="gateway", config=LoadedConfig("cortex", CortexConfig(), None, {}), pm=PluginManager("cortex")
    )
    client = TestClient(create_app(kernel, [part]))
    seen: dict[tuple[str, str], tuple[int, list[str]]] = {}
    for method, path in [
        ("POST", "/p/x"),
        ("GET", "/p/x"),
        ("POST", "/p/none"),
        ("POST", "/q"),
        ("POST", "/p/lane"),
        ("POST", "/q/lane"),
    ]:
        calls.clear()
        status = client.request(method, path).status_code
        seen[method, path] = (status, sorted(name for name, _ in calls))
    assert seen == {
        ("POST", "/p/x"): (200, ["route", "watches"]),
        ("GET", "/p/x"): (405, ["watches"]),
        ("POST", "/p/none"): (404, ["watches"]),
        ("POST", "/q"): (200, ["watches"]),  # not watched, but not a lane: still in front of it
        ("POST", "/p/lane"): (200, ["watches"]),
        ("POST", "/q/lane"): (200, []),
    }
