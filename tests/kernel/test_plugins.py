"""The plugin manager factory, the app factory and third-party plugins found by entry point."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pluggy
import pytest
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.testclient import TestClient

from cortex_kernel import hookimpl
from cortex_kernel.app import create_app
from cortex_kernel.catalogue_entry import CatalogueEntry
from cortex_kernel.config.loader import LoadedConfig
from cortex_kernel.config.schema import CortexConfig
from cortex_kernel.errors import CortexError, Overloaded
from cortex_kernel.kernel import AppPart, Kernel, Role
from cortex_kernel.plugins import PluginError, build_plugin_manager, describe_plugins


def _kernel(pm: pluggy.PluginManager) -> Kernel:
    return Kernel(role="gateway", config=LoadedConfig("cortex", CortexConfig(), None, {}), pm=pm)


def test_factory_builds_independent_managers() -> None:
    first = build_plugin_manager(load_entrypoints=False)
    second = build_plugin_manager(load_entrypoints=False)
    assert first is not second
    first.register(object(), name="only-in-first")
    assert first.get_plugin("only-in-first") is not None
    assert second.get_plugin("only-in-first") is None


def test_third_party_entry_point_routes_are_mounted(third_party_path: Path) -> None:
    pm = build_plugin_manager()
    names = {info.name: info for info in describe_plugins(pm)}
    assert names["hello"].version == "1.2.3"
    client = TestClient(create_app(_kernel(pm)))
    response = client.get("/hello")
    assert response.status_code == 200
    assert response.json() == {"hello": "world"}


def test_blocked_third_party_plugin_is_never_imported(third_party_path: Path) -> None:
    import sys

    pm = build_plugin_manager(blocked=["hello"])
    assert "hello" not in {info.name for info in describe_plugins(pm)}
    assert "cortex_hello" not in sys.modules
    assert TestClient(create_app(_kernel(pm))).get("/hello").status_code == 404


def test_autoload_switch_skips_entry_points() -> None:
    pm = build_plugin_manager(environ={"CORTEX_KERNEL_NO_AUTOLOAD": "1"})
    assert describe_plugins(pm) == []


def test_hook_register_app_parts(cortex_pm: pluggy.PluginManager) -> None:
    """Parts are mounted in registration order, their lifespans entered in order, exited reversed."""
    events: list[str] = []

    def part(name: str) -> AppPart:
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def lifespan() -> AsyncIterator[None]:
            events.append(f"start {name}")
            yield
            events.append(f"stop {name}")

        async def endpoint(request: Request) -> Response:
            from starlette.responses import PlainTextResponse

            return PlainTextResponse(name)

        return AppPart(name=name, routes=[Route(f"/{name}", endpoint)], lifespan=lifespan)

    class First:
        @hookimpl
        def register_app_parts(self, role: Role) -> list[AppPart] | None:
            return [part("first")] if role == "gateway" else None

    class Second:
        @hookimpl
        def register_app_parts(self, role: Role) -> list[AppPart] | None:
            return [part("second")] if role == "gateway" else None

    cortex_pm.register(First(), name="first")
    cortex_pm.register(Second(), name="second")
    with TestClient(create_app(_kernel(cortex_pm))) as client:
        assert client.get("/first").text == "first"
        assert client.get("/second").text == "second"
    assert events == ["start first", "start second", "stop second", "stop first"]


def test_conflicting_routes_are_a_startup_error(cortex_pm: pluggy.PluginManager) -> None:
    async def endpoint(request: Request) -> Response:  # pragma: no cover - never served
        raise AssertionError

    class Claim:
        def __init__(self, name: str) -> None:
            self.name = name

        @hookimpl
        def register_app_parts(self) -> list[AppPart]:
            return [AppPart(name=self.name, routes=[Route("/same", endpoint, methods=["POST"])])]

    cortex_pm.register(Claim("a"), name="a")
    cortex_pm.register(Claim("b"), name="b")
    with pytest.raises(PluginError, match="both claim POST /same"):
        create_app(_kernel(cortex_pm))


def test_errors_use_the_openai_envelope(cortex_pm: pluggy.PluginManager) -> None:
    async def busy(request: Request) -> Response:
        raise Overloaded("model is busy", retry_after=3)

    async def crash(request: Request) -> Response:
        raise RuntimeError("boom")

    class Plugin:
        @hookimpl
        def register_app_parts(self) -> list[AppPart]:
            return [AppPart(name="p", routes=[Route("/busy", busy), Route("/crash", crash)])]

    cortex_pm.register(Plugin(), name="p")
    client = TestClient(create_app(_kernel(cortex_pm)), raise_server_exceptions=False)
    busy_response = client.get("/busy")
    assert busy_response.status_code == 503
    assert busy_response.headers["retry-after"] == "3"
    assert busy_response.json() == {
        "error": {
            "message": "model is busy",
            "type": "overloaded_error",
            "code": "service_unavailable",
            "param": None,
        }
    }
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    wrong_method = client.post("/busy")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    crashed = client.get("/crash")
    assert crashed.status_code == 500
    assert crashed.json()["error"]["code"] == "internal_error"
    assert "boom" not in crashed.text


def test_broken_plugin_is_reported_not_crashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "broken"
    site.mkdir()
    (site / "cortex_broken.py").write_text("raise ImportError('missing dependency xyz')\n")
    dist = site / "cortex_broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cortex-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[cortex_kernel]\nbroken = cortex_broken\n")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(PluginError, match="missing dependency xyz"):
        build_plugin_manager()
    assert build_plugin_manager(blocked=["broken"]) is not None


def test_hook_register_commands(cortex_pm: pluggy.PluginManager) -> None:
    import click

    class Plugin:
        @hookimpl
        def register_commands(self, cli: click.Group) -> None:
            cli.add_command(click.Command("extra", help="An extra command."))

    cortex_pm.register(Plugin(), name="p")
    group = click.Group()
    cortex_pm.hook.register_commands(cli=group)
    assert "extra" in group.commands


def test_hook_register_harnesses(cortex_pm: pluggy.PluginManager) -> None:
    from cortex_kernel.harness import Harness, HarnessContext, HarnessSpec

    def factory(context: HarnessContext) -> Harness:  # pragma: no cover - not built here
        raise AssertionError

    class Plugin:
        @hookimpl
        def register_harnesses(self) -> list[HarnessSpec]:
            return [HarnessSpec(name="fake", factory=factory)]

    cortex_pm.register(Plugin(), name="p")
    specs = [spec for result in cortex_pm.hook.register_harnesses() if result for spec in result]
    assert [spec.name for spec in specs] == ["fake"]


def test_hook_register_dialects(cortex_pm: pluggy.PluginManager) -> None:
    """A dialect's routes are mounted on the gateway and it may answer /v1/models in its shape."""
    from starlette.responses import JSONResponse

    from cortex_kernel.dialect import Dialect, Upstream

    seen: list[Upstream] = []

    class Shouty:
        name = "shouty"

        def routes(self, upstream: Upstream) -> list[BaseRoute]:
            seen.append(upstream)

            async def hello(request: Request) -> JSONResponse:
                return JSONResponse({"models": [m.id.upper() for m in upstream.models()]})

            return [Route("/shout", hello)]

        def render_models(self, request: Request, models: list[CatalogueEntry]) -> JSONResponse | None:
            if request.headers.get("x-shout"):
                return JSONResponse({"shouted": [m.id.upper() for m in models]})
            return None

        def claims(self, request: HTTPConnection) -> bool:
            return request.url.path == "/shout"

        def render_error(self, error: CortexError) -> JSONResponse:
            return JSONResponse({"SHOUTED": error.message.upper()}, status_code=error.status)

    class Plugin:
        @hookimpl
        def register_dialects(self) -> list[Dialect]:
            return [Shouty()]

    import cortex_evictors.plugin as evictors_plugin
    import cortex_gateway.plugin as gateway_plugin

    cortex_pm.register(gateway_plugin, name="gateway")
    cortex_pm.register(evictors_plugin, name="evictors")
    cortex_pm.register(Plugin(), name="shouty")
    from cortex_kernel.config.schema import Catalogue, ModelProfile

    catalogue = Catalogue(models=[ModelProfile(id="m1", harness="x")])
    kernel = Kernel(
        role="gateway", config=LoadedConfig("cortex", CortexConfig(), None, {}, catalogue), pm=cortex_pm
    )
    with TestClient(create_app(kernel)) as client:
        assert client.get("/shout").json() == {"models": ["M1"]}
        assert client.get("/v1/models", headers={"x-shout": "1"}).json() == {"shouted": ["M1"]}
        assert client.get("/v1/models").json()["data"][0]["id"] == "m1"
    assert isinstance(Shouty(), Dialect) and isinstance(seen[0], Upstream)
