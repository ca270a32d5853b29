"""``RouteMiddleware``: middleware around the routes under some prefixes only, whichever part's."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from cortex_kernel.route_middleware import RouteMiddleware, wrap_routes


class Mark:
    """Records each path it is called for, under its name."""

    def __init__(self, app: ASGIApp, name: str, calls: list[tuple[str, str]]) -> None:
        self.app, self.name, self.calls = app, name, calls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls.append((self.name, scope["path"]))
        await self.app(scope, receive, send)


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def test_only_the_routes_under_a_prefix_are_wrapped_and_the_first_entry_is_outermost():
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
