"""A dialect the kernel and gateway have never heard of plugs in through the Dialect protocol alone.

The ``echo`` dialect below has its own route, its own error envelope and its own way of telling
its clients apart (an ``x-echo-version`` header). The gateway refuses a missing key in that
envelope, reports the refusal under the dialect's name, and routes its requests upstream, with
no line of the kernel or the gateway naming it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.testclient import TestClient

import cortex_evictors.plugin
import cortex_gateway.plugin
from cortex_kernel.app import create_app
from cortex_kernel.config.loader import LoadedConfig
from cortex_kernel.config.schema import AuthSection, Catalogue, CortexConfig, ModelProfile, NeuronEndpoint
from cortex_kernel.dialect import Upstream
from cortex_kernel.errors import CortexError, retry_headers
from cortex_kernel.events import Event, RequestFinished
from cortex_kernel.hookspecs import hookimpl
from cortex_kernel.kernel import Kernel
from cortex_kernel.keys import key_digest
from cortex_kernel.plugins import build_plugin_manager
from cortex_kernel.testing.scripted_neuron import MODEL, Json, ScriptedNeuron

KEY = "echo-key"


class EchoDialect:
    """Answers ``POST /v1/echo`` with the neuron's reply wrapped as ``{"said": ...}``; its errors
    are ``{"problem": {"kind", "text"}}`` with status 418 for anything refused at the door."""

    name = "echo"

    def routes(self, upstream: Upstream) -> list[BaseRoute]:
        async def echo(request: Request) -> Response:
            body = msgspec.json.encode(
                {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}
            )
            reply = await upstream.open("/v1/chat/completions", MODEL, body)
            return Response(msgspec.json.encode({"said": msgspec.json.decode(await reply.read())}))

        return [Route("/v1/echo", echo, methods=["POST"])]

    def render_models(self, request: Request, models: list[dict[str, Any]]) -> Response | None:
        return None

    def claims(self, request: HTTPConnection) -> bool:
        return request.url.path == "/v1/echo" or "x-echo-version" in request.headers

    def render_error(self, error: CortexError) -> Response:
        body = msgspec.json.encode({"problem": {"kind": error.code, "text": error.message}})
        return Response(body, status_code=418, headers=retry_headers(error), media_type="application/json")


class Plugin:
    def __init__(self) -> None:
        self.events: list[Event] = []

    @hookimpl
    def register_dialects(self) -> list[EchoDialect]:
        return [EchoDialect()]

    @hookimpl
    def register_event_sinks(self, role: str, kernel: Kernel) -> list[Plugin]:
        return [self]

    def handle(self, event: Event) -> None:
        self.events.append(event)


@pytest.fixture
def echo(scripted_neuron: ScriptedNeuron) -> Iterator[tuple[TestClient, Plugin, ScriptedNeuron]]:
    neuron = scripted_neuron
    plugin = Plugin()
    config = CortexConfig(
        neurons=[NeuronEndpoint(name="n1", endpoint=neuron.url)],
        auth=AuthSection(require_api_key=True, api_keys=[key_digest(KEY)]),
    )
    loaded = LoadedConfig(
        kind="cortex",
        value=config,
        path=None,
        sources={},
        catalogue=Catalogue(models=[ModelProfile(id=MODEL, harness="scripted", min_devices=0)]),
    )
    pm = build_plugin_manager(
        load_entrypoints=False,
        extra=[("gateway", cortex_gateway.plugin), ("evictors", cortex_evictors.plugin), ("echo", plugin)],
    )
    with TestClient(create_app(Kernel(role="gateway", config=loaded, pm=pm))) as http:
        yield http, plugin, neuron


def test_a_refused_key_comes_in_the_claiming_dialects_envelope(
    echo: tuple[TestClient, Plugin, ScriptedNeuron],
) -> None:
    http, plugin, _ = echo
    refused = http.post("/v1/echo")
    assert refused.status_code == 418
    assert refused.json() == {"problem": {"kind": "invalid_api_key", "text": "missing or unknown API key"}}
    # A shared path is claimed by the header the dialect's clients send.
    claimed = http.get("/v1/models", headers={"x-echo-version": "1"})
    assert claimed.json()["problem"]["kind"] == "invalid_api_key"
    # Everything else keeps the gateway's own (OpenAI) envelope.
    openai = http.get("/v1/models")
    assert openai.status_code == 401 and openai.json()["error"]["code"] == "invalid_api_key"
    refusals = [e for e in plugin.events if isinstance(e, RequestFinished)]
    assert [(e.dialect, e.status) for e in refusals] == [("echo", 418), ("echo", 418), ("openai", 401)]


def test_the_dialects_route_reaches_a_neuron_through_the_upstream(
    echo: tuple[TestClient, Plugin, ScriptedNeuron],
) -> None:
    http, _, neuron = echo
    neuron.then(Json({"choices": [{"message": {"content": "hello"}}]}))
    answered = http.post("/v1/echo", headers={"authorization": f"Bearer {KEY}"})
    assert answered.status_code == 200, answered.text
    assert answered.json() == {"said": {"choices": [{"message": {"content": "hello"}}]}}
