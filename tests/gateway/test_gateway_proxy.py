"""A real gateway in front of a real neuron: merged catalogue, cold load, pass-through, errors.

The tests that only need a neuron to answer (the catalogue, the gateway's own errors) put the
gateway in front of the scripted neuron double instead: no neuron process to start."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import openai
import pytest

from cortex_kernel.testing.scripted_neuron import ScriptedNeuron
from tests.daemons import Daemon, http_json
from tests.fleet_fixtures import gather_with_client

pytestmark = pytest.mark.slow


ALIAS = '\n[aliases]\nsmall = "tiny-chat"\n'


@pytest.fixture
def fleet(start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon]) -> tuple[Daemon, Daemon]:
    neuron = start_neuron()
    gateway = start_gateway({"n1": neuron}, catalogue_extra=ALIAS)
    return gateway, neuron


@pytest.fixture
def scripted_gateway(start_gateway: Callable[..., Daemon]) -> Iterator[Daemon]:
    """The gateway daemon over a scripted neuron with nothing loaded."""
    neuron = ScriptedNeuron(ready=()).start()
    try:
        yield start_gateway({"n1": neuron}, catalogue_extra=ALIAS)
    finally:
        neuron.stop()


def test_catalogue_lists_unloaded_models_and_aliases(scripted_gateway: Daemon) -> None:
    gateway = scripted_gateway
    status, listing, _ = http_json("GET", f"{gateway.url}/v1/models")
    assert status == 200
    entries = {entry["id"]: entry for entry in listing["data"]}
    assert {"tiny-chat", "tiny-embed", "never-loaded", "small"} <= set(entries)
    assert entries["tiny-chat"]["loaded"] is False
    assert entries["tiny-chat"]["aliases"] == ["small"]
    assert entries["small"]["alias_of"] == "tiny-chat"
    assert {"object", "created", "owned_by"} <= set(entries["tiny-chat"])


def test_first_requests_cold_load_exactly_once(fleet: tuple[Daemon, Daemon]) -> None:
    gateway, neuron = fleet

    def requests(client: openai.AsyncOpenAI) -> list[Awaitable[Any]]:
        return [
            client.chat.completions.create(
                model="small", messages=[{"role": "user", "content": f"hi {i}"}], max_tokens=4
            )
            for i in range(20)
        ]

    replies = asyncio.run(gather_with_client(f"{gateway.url}/v1", requests))
    assert all(reply.choices[0].finish_reason in ("stop", "length", "tool_calls") for reply in replies)
    assert {reply.model for reply in replies} == {"tiny-chat"}  # the alias was rewritten
    health = http_json("GET", f"{neuron.url}/health")[1]
    assert health["lifecycle_cycles"] == 1  # twenty first requests, one load
    assert health["models"]["tiny-chat"] == {"state": "ready", "in_flight": 0, "queued": 0}


def test_streaming_pass_through_and_embeddings(
    fleet: tuple[Daemon, Daemon], openai_client: Callable[..., openai.OpenAI]
) -> None:
    gateway, _ = fleet
    client = openai_client(f"{gateway.url}/v1", api_key="client-key")
    chunks = list(
        client.chat.completions.create(
            model="tiny-chat",
            messages=[{"role": "user", "content": "stream please"}],
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    vectors = client.embeddings.create(model="tiny-embed", input="embed me")
    assert len(vectors.data) == 1 and len(vectors.data[0].embedding) > 0


def test_gateway_errors_use_the_openai_envelope(scripted_gateway: Daemon) -> None:
    gateway = scripted_gateway
    chat = f"{gateway.url}/v1/chat/completions"
    status, body, _ = http_json(
        "POST", chat, {"model": "nope", "messages": [{"role": "user", "content": "x"}]}
    )
    assert status == 404 and body["error"]["code"] == "model_not_found"
    status, body, _ = http_json("POST", chat, {"messages": []})
    assert status == 400 and body["error"]["code"] == "missing_model"
    status, body, _ = http_json("POST", chat, {"model": 5})
    assert status == 422 and body["error"]["param"] == "model"
    status, health, _ = http_json("GET", f"{gateway.url}/health")
    assert health["status"] == "ok" and health["nodes"] == {"up": 1, "total": 1}


def test_status_command_renders_the_fleet(fleet: tuple[Daemon, Daemon]) -> None:
    import subprocess

    from tests.daemons import EXE

    gateway, _ = fleet
    http_json(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        {"model": "tiny-chat", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2},
        timeout=120,
    )
    out = subprocess.run(
        [EXE, "status", "--endpoint", gateway.url], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "fleet ok: 1/1 nodes up, 1 cold starts, 0 evictions" in out.stdout
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines() if line.strip()}
    assert rows["n1"][1] == "up"
    assert rows["tiny-chat"][1:3] == ["n1", "ready"]
    as_json = subprocess.run(
        [EXE, "status", "--json", "--endpoint", gateway.url], capture_output=True, text=True, timeout=60
    )
    assert '"nodes"' in as_json.stdout


def test_load_and_unload_commands_show_progress(fleet: tuple[Daemon, Daemon]) -> None:
    import subprocess

    from tests.daemons import EXE

    gateway, neuron = fleet
    out = subprocess.run(
        [EXE, "load", "tiny-embed", "--endpoint", gateway.url], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "tiny-embed: loading on n1" and lines[-1] == "tiny-embed: ready"
    assert http_json("GET", f"{neuron.url}/health")[1]["models"]["tiny-embed"]["state"] == "ready"
    out = subprocess.run(
        [EXE, "unload", "tiny-embed", "--endpoint", gateway.url], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout.strip() == "tiny-embed: unloaded"
    assert "tiny-embed" not in http_json("GET", f"{neuron.url}/health")[1]["models"]
    missing = subprocess.run(
        [EXE, "load", "ghost", "--endpoint", gateway.url], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 1 and "HTTP 404" in missing.stderr
