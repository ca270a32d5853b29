"""Which requests pass through the console's middleware: its own routes and the admin API's, never
the API's (``/v1/...``), relayed or translated, which are the gateway's hot path.

The real gateway and console plugins, in-process, in front of a node nothing listens on: every
request here is answered without a neuron. Each console middleware class is wrapped to record the
paths it is called for.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

import cortex_console.plugin
import cortex_evictors.plugin
import cortex_gateway.plugin
from cortex_console.admin_tap import AdminTap
from cortex_console.guard import CrossSiteGuard
from cortex_kernel.app import create_app
from cortex_kernel.config.loader import LoadedConfig
from cortex_kernel.config.schema import Catalogue, CortexConfig, ModelProfile, NeuronEndpoint
from cortex_kernel.kernel import Kernel
from cortex_kernel.plugins import build_plugin_manager
from tests.daemons import free_port

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(middleware class, path) for every call of a console middleware."""
    calls: list[tuple[str, str]] = []
    for cls in (CrossSiteGuard, AdminTap):
        original = cls.__call__

        async def counting(
            self: Any,
            scope: Scope,
            receive: Receive,
            send: Send,
            original: Any = original,
            name: str = cls.__name__,
        ) -> None:
            calls.append((name, scope["path"]))
            await original(self, scope, receive, send)

        monkeypatch.setattr(cls, "__call__", counting)
    return calls


@pytest.fixture
def client() -> Iterator[TestClient]:
    config = CortexConfig(neurons=[NeuronEndpoint(name="n1", endpoint=f"http://127.0.0.1:{free_port()}")])
    catalogue = Catalogue(models=[ModelProfile(id="m", harness="transformers", min_devices=0)], aliases={})
    loaded = LoadedConfig(kind="cortex", value=config, path=None, sources={}, catalogue=catalogue)
    pm = build_plugin_manager(
        load_entrypoints=False,
        extra=[
            ("gateway", cortex_gateway.plugin),
            ("evictors", cortex_evictors.plugin),
            ("console", cortex_console.plugin),
        ],
    )
    app = create_app(Kernel(role="gateway", config=loaded, pm=pm))
    with TestClient(app, client=("127.0.0.1", 50000)) as client:  # loopback: no admin keys needed
        yield client


def test_relayed_requests_do_not_pass_through_the_consoles_middleware(
    client: TestClient, seen: list[tuple[str, str]]
) -> None:
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        assert client.post(path, json=CHAT).status_code >= 400  # the node is down: answered all the same
    assert client.get("/v1/models").status_code == 200
    assert not [call for call in seen if call[1].startswith("/v1/")], seen


def test_the_consoles_middleware_still_guards_the_console_and_watches_the_admin_api(
    client: TestClient, seen: list[tuple[str, str]]
) -> None:
    assert client.get("/console/api/state").status_code == 200
    assert client.post("/admin/nodes/n1/drain", json={"drain": True}).status_code == 200
    assert ("CrossSiteGuard", "/console/api/state") in seen
    assert ("AdminTap", "/admin/nodes/n1/drain") in seen
    state = client.get("/console/api/state").json()
    assert [node["draining"] for node in state["nodes"]] == [True]  # the tap told the hub at once
