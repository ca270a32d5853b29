"""The gateway emits one RequestFinished per request and lifecycle events, to every sink."""

from __future__ import annotations

import pytest

from cortex_gateway.tap import find_usage
from cortex_kernel import hookimpl
from cortex_kernel.events import EventBus, ModelLoaded, RequestFinished


def test_event_bus_isolates_a_failing_sink(caplog):
    seen = []

    class Broken:
        def handle(self, event):
            raise RuntimeError("sink bug")

    class Recorder:
        def handle(self, event):
            seen.append(event)

    bus = EventBus([Broken(), Recorder()])
    event = ModelLoaded(node="n", model="m", seconds=1.0, ok=True)
    bus.emit(event)
    assert seen == [event]
    assert "sink bug" in caplog.text


def test_usage_is_found_in_a_stream_tail_and_a_json_body():
    stream = (
        b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,'
        b'"prompt_tokens_details":{"cached_tokens":4}}}\n\ndata: [DONE]\n\n'
    )
    usage = find_usage(stream)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.prompt_tokens_details) == (
        7,
        3,
        {"cached_tokens": 4},
    )
    assert find_usage(b'{"id":"x","usage":{"prompt_tokens":2,"completion_tokens":1}}').completion_tokens == 1
    assert find_usage(b"data: [DONE]\n\n") is None


def test_hook_register_event_sinks(cortex_pm):
    from starlette.testclient import TestClient

    import cortex_evictors.plugin as evictors
    import cortex_gateway.plugin as gateway
    from cortex_kernel.app import create_app
    from cortex_kernel.config.loader import LoadedConfig
    from cortex_kernel.config.schema import CortexConfig
    from cortex_kernel.kernel import Kernel

    events = []

    class Sink:
        @hookimpl
        def register_event_sinks(self, role):
            class Recorder:
                def handle(self, event):
                    events.append(event)

            return [Recorder()] if role == "gateway" else None

    for name, plugin in (("gateway", gateway), ("evictors", evictors), ("sink", Sink())):
        cortex_pm.register(plugin, name=name)
    kernel = Kernel(role="gateway", config=LoadedConfig("cortex", CortexConfig(), None, {}), pm=cortex_pm)
    with TestClient(create_app(kernel)) as client:
        reply = client.post(
            "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert reply.status_code == 400
        reply = client.post("/v1/chat/completions", json={"model": "ghost", "messages": []})
        assert reply.status_code == 404
    assert [(e.status, e.error, e.model) for e in events if isinstance(e, RequestFinished)] == [
        (400, "invalid_json", "unknown"),
        (404, "model_not_found", "unknown"),
    ]


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
    start_neuron, tmp_path, tiny_chat_model, tiny_embed_model
):
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
