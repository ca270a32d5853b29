"""The gateway emits one RequestFinished per request and lifecycle events, to every sink."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pluggy
import pytest

from cortex_gateway.tap import find_usage
from cortex_kernel import hookimpl
from cortex_kernel.config.schema import AuthSection, CortexConfig
from cortex_kernel.events import Event, EventBus, EventSink, ModelLoaded, RequestFinished
from cortex_kernel.kernel import Role
from cortex_kernel.keys import key_digest
from tests.daemons import Daemon

if TYPE_CHECKING:
    from starlette.testclient import TestClient


def test_event_bus_isolates_a_failing_sink(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Event] = []

    class Broken:
        def handle(self, event: Event) -> None:
            raise RuntimeError("sink bug")

    class Recorder:
        def handle(self, event: Event) -> None:
            seen.append(event)

    bus = EventBus([Broken(), Recorder()])
    event = ModelLoaded(node="n", model="m", seconds=1.0, ok=True)
    bus.emit(event)
    assert seen == [event]
    assert "sink bug" in caplog.text


def test_usage_is_found_in_a_stream_tail_and_a_json_body() -> None:
    stream = (
        b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,'
        b'"prompt_tokens_details":{"cached_tokens":4}}}\n\ndata: [DONE]\n\n'
    )
    usage = find_usage(stream)
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.prompt_tokens_details) == (
        7,
        3,
        {"cached_tokens": 4},
    )
    body_usage = find_usage(b'{"id":"x","usage":{"prompt_tokens":2,"completion_tokens":1}}')
    assert body_usage is not None and body_usage.completion_tokens == 1
    assert find_usage(b"data: [DONE]\n\n") is None


@contextlib.contextmanager
def recording_gateway(
    cortex_pm: pluggy.PluginManager, config: CortexConfig
) -> Iterator[tuple[TestClient, list[Event]]]:
    """An in-process gateway app whose events land in the yielded list (with a test client)."""
    from starlette.testclient import TestClient

    import cortex_anthropic.plugin as anthropic
    import cortex_evictors.plugin as evictors
    import cortex_gateway.plugin as gateway
    from cortex_kernel.app import create_app
    from cortex_kernel.config.loader import LoadedConfig
    from cortex_kernel.kernel import Kernel

    events: list[Event] = []

    class Sink:
        @hookimpl
        def register_event_sinks(self, role: Role) -> list[EventSink] | None:
            class Recorder:
                def handle(self, event: Event) -> None:
                    events.append(event)

            return [Recorder()] if role == "gateway" else None

    plugins = (("gateway", gateway), ("evictors", evictors), ("anthropic", anthropic), ("sink", Sink()))
    for name, plugin in plugins:
        cortex_pm.register(plugin, name=name)
    kernel = Kernel(role="gateway", config=LoadedConfig("cortex", config, None, {}), pm=cortex_pm)
    with TestClient(create_app(kernel)) as client:
        yield client, events


def finished(events: list[Event]) -> list[tuple[int, str | None, str, str, str]]:
    requests = [e for e in events if isinstance(e, RequestFinished)]
    return [(e.status, e.error, e.model, e.dialect, e.endpoint) for e in requests]


def test_hook_register_event_sinks(cortex_pm: pluggy.PluginManager) -> None:
    with recording_gateway(cortex_pm, CortexConfig()) as (client, events):
        reply = client.post(
            "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert reply.status_code == 400
        reply = client.post("/v1/chat/completions", json={"model": "ghost", "messages": []})
        assert reply.status_code == 404
    assert finished(events) == [
        (400, "invalid_json", "unknown", "openai", "/v1/chat/completions"),
        (404, "model_not_found", "unknown", "openai", "/v1/chat/completions"),
    ]


def test_auth_rejections_are_events_in_the_callers_dialect(cortex_pm: pluggy.PluginManager) -> None:
    config = CortexConfig(auth=AuthSection(require_api_key=True, api_keys=[key_digest("sk-right")]))
    with recording_gateway(cortex_pm, config) as (client, events):
        chat = {"model": "ghost", "messages": []}
        assert client.post("/v1/chat/completions", json=chat).status_code == 401
        wrong = {"x-api-key": "sk-wrong", "anthropic-version": "2023-06-01"}
        reply = client.post("/v1/messages", json={**chat, "max_tokens": 1}, headers=wrong)
        assert (reply.status_code, reply.json()["type"]) == (401, "error")
        # The test client is not a loopback address and no admin key is configured.
        assert client.get("/admin/fleet").status_code == 403
        assert client.get("/health").status_code == 200  # public, and not a request event
        right = {"authorization": "Bearer sk-right"}
        assert client.post("/v1/chat/completions", json=chat, headers=right).status_code == 404
    assert finished(events) == [
        (401, "invalid_api_key", "unknown", "openai", "/v1/chat/completions"),
        (401, "invalid_api_key", "unknown", "anthropic", "/v1/messages"),
        (403, "forbidden", "unknown", "openai", "/admin/fleet"),
        (404, "model_not_found", "unknown", "openai", "/v1/chat/completions"),
    ]
    assert all(e.node is None and e.duration_s >= 0 for e in events if isinstance(e, RequestFinished))


EVENT_LOG_PLUGIN = """
import msgspec
from cortex_kernel import hookimpl


class Log:
    def __init__(self, path):
        self.path = path

    def handle(self, event):
        with open(self.path, "ab") as f:
            record = {"kind": type(event).__name__, **msgspec.to_builtins(event)}
            f.write(msgspec.json.encode(record) + b"\\n")


@hookimpl
def register_event_sinks(role):
    return [Log(PATH)]
"""


@pytest.mark.slow
def test_real_traffic_emits_request_and_lifecycle_events(
    start_neuron: Callable[..., Daemon], tmp_path: Path, tiny_chat_model: Path, tiny_embed_model: Path
) -> None:
    """A sink installed by entry point sees a cold load, a stream with usage and TTFT, an error."""
    import json
    import os
    import sys

    from tests.daemons import Daemon, free_port, http_json, toml_str, write_toml
    from tests.fleet_fixtures import models_toml

    neuron = start_neuron()
    log = tmp_path / "events.jsonl"
    site = tmp_path / "site"
    write_toml(site / "cortex_eventlog.py", EVENT_LOG_PLUGIN.replace("PATH", repr(str(log))))
    write_toml(
        site / "cortex_eventlog-1.0.dist-info" / "METADATA",
        "Metadata-Version: 2.1\nName: cortex-eventlog\nVersion: 1.0\n",
    )
    write_toml(
        site / "cortex_eventlog-1.0.dist-info" / "entry_points.txt",
        "[cortex_kernel]\neventlog = cortex_eventlog\n",
    )
    port = free_port()
    write_toml(tmp_path / "etc" / "models.toml", models_toml(tiny_chat_model, tiny_embed_model))
    config = write_toml(
        tmp_path / "etc" / "cortex.toml",
        f'[gateway]\nlisten = "127.0.0.1:{port}"\nmetrics_listen = "127.0.0.1:{free_port()}"\n\n'
        f'[[neurons]]\nname = "n1"\nendpoint = {toml_str(neuron.url)}\n',
    )
    env = {"PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    gateway = Daemon(["serve", "--config", str(config)], port, tmp_path / "gw.log", env=env).start()
    try:
        gateway.wait_healthy()
        body = {
            "model": "tiny-chat",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 5,
            "ignore_eos": True,  # exactly 5 tokens, whatever the random model would pick
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        from tests.daemons import LineStream

        with LineStream(f"{gateway.url}/v1/chat/completions", "POST", body, timeout=120) as stream:
            assert stream.status == 200
            list(stream)
        status, _, _ = http_json(
            "POST", f"{gateway.url}/v1/chat/completions", {"model": "nope", "messages": []}
        )
        assert status == 404
    finally:
        gateway.stop()
    events = [json.loads(line) for line in log.read_text().splitlines()]
    loads = [e for e in events if e["kind"] == "ModelLoaded"]
    assert [(e["node"], e["model"], e["ok"]) for e in loads] == [("n1", "tiny-chat", True)]
    requests = [e for e in events if e["kind"] == "RequestFinished"]
    assert len(requests) == 2
    streamed, missing = requests
    assert streamed["status"] == 200 and streamed["streamed"] and streamed["cold_start"]
    assert streamed["node"] == "n1" and streamed["model"] == "tiny-chat"
    assert streamed["completion_tokens"] == 5 and streamed["prompt_tokens"] > 0
    assert 0 < streamed["first_token_s"] <= streamed["duration_s"]
    assert streamed["waited_s"] > 0  # it waited for the cold load
    assert all(gap >= 0 for gap in streamed["inter_token_s"])  # fast chunks may arrive in one read
    assert (missing["status"], missing["error"], missing["model"]) == (404, "model_not_found", "unknown")
