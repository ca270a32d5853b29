"""Lanes: a part's ``(method, path)`` answered in front of Starlette, inside only the parts'
middleware that watches that path, and each lane claimed once."""

from __future__ import annotations

from typing import Any

import pluggy
import pytest
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from cortex_kernel import hookimpl
from cortex_kernel.app import create_app
from cortex_kernel.config.loader import LoadedConfig
from cortex_kernel.config.schema import CortexConfig
from cortex_kernel.kernel import AppPart, Kernel
from cortex_kernel.plugins import PluginError


def _kernel(pm: pluggy.PluginManager) -> Kernel:
    return Kernel(role="gateway", config=LoadedConfig("cortex", CortexConfig(), None, {}), pm=pm)


class Recorder:
    """Middleware without ``watches``: it must see every request, lanes included."""

    seen: list[str]

    def __init__(self, app: ASGIApp, seen: list[str], tag: str) -> None:
        self.app, self.seen, self.tag = app, seen, tag

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append(f"{self.tag} {scope['method']} {scope['path']}")
        await self.app(scope, receive, send)


class AdminOnly(Recorder):
    """Middleware that says it watches only ``/admin`` paths."""

    @staticmethod
    def watches(path: str) -> bool:
        return path.startswith("/admin")


async def lane(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("from the lane")(scope, receive, send)


async def routed(request: Any) -> PlainTextResponse:
    return PlainTextResponse("from the router")


def test_a_lane_answers_its_method_and_path_inside_the_middleware_that_watches_it(
    cortex_pm: pluggy.PluginManager,
) -> None:
    seen: list[str] = []

    class Part:
        @hookimpl
        def register_app_parts(self) -> list[AppPart]:
            return [
                AppPart(
                    name="lanes",
                    routes=[Route("/relay", routed, methods=["GET", "POST"])],
                    middleware=[
                        Middleware(Recorder, seen=seen, tag="all"),
                        Middleware(AdminOnly, seen=seen, tag="admin"),
                    ],
                    lanes={("POST", "/relay"): lane},
                )
            ]

    cortex_pm.register(Part(), name="lanes")
    with TestClient(create_app(_kernel(cortex_pm))) as client:
        assert client.post("/relay").text == "from the lane"
        assert client.get("/relay").text == "from the router"  # another method: the router's
        assert client.post("/admin/x").status_code == 404
    assert seen == [
        "all POST /relay",
        "all GET /relay",
        "admin GET /relay",
        "all POST /admin/x",
        "admin POST /admin/x",
    ]


def test_two_parts_claiming_one_lane_stop_start_up(cortex_pm: pluggy.PluginManager) -> None:
    class Claim:
        def __init__(self, name: str) -> None:
            self.name = name

        @hookimpl
        def register_app_parts(self) -> list[AppPart]:
            return [AppPart(name=self.name, lanes={("POST", "/same"): lane})]

    cortex_pm.register(Claim("a"), name="a")
    cortex_pm.register(Claim("b"), name="b")
    with pytest.raises(PluginError, match="both claim the lane POST /same"):
        create_app(_kernel(cortex_pm))
