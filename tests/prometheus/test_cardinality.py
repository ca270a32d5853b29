"""Metric cardinality stays bounded whatever clients send, and whatever nodes report."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import pytest

from cortex_kernel.events import FleetPolled, ModelSnapshot, NodeSnapshot
from cortex_prometheus.exposition import render
from cortex_prometheus.labels import MAX_MODELS, OVERFLOW, UNKNOWN
from cortex_prometheus.sink import MetricsSink
from tests.daemons import Daemon, free_port, write_toml
from tests.prometheus.events import finished
from tests.prometheus.exposition import fetch, parse, series_of, value

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages")


def _send(connection: http.client.HTTPConnection, path: str, model: str, key: str) -> int:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "x"}],
        "prompt": "x",
        "input": "x",
    }
    if path == "/v1/messages":
        body["max_tokens"] = 1
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}", "x-api-key": key}
    connection.request("POST", path, body=json.dumps(body), headers=headers)
    response = connection.getresponse()
    response.read()
    return response.status


@pytest.mark.slow
def test_a_thousand_unknown_models_and_api_keys_add_no_series(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    config = write_toml(
        tmp_path / "cortex.toml",
        f'[gateway]\nlisten = "127.0.0.1:{port}"\nmetrics_listen = "127.0.0.1:{metrics_port}"\n\n'
        f'[[neurons]]\nname = "n1"\nendpoint = "http://127.0.0.1:{free_port()}"\n',
    )
    write_toml(tmp_path / "models.toml", "")
    gateway = Daemon(["serve", "--config", str(config)], port, tmp_path / "gateway.log").start()
    metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        gateway.wait_healthy()
        for path in ENDPOINTS:  # every series unknown traffic can create, once
            assert _send(connection, path, "warm-up", "sk-warm-up") == 404
        before = parse(fetch(metrics))

        for i in range(1000):
            status = _send(connection, ENDPOINTS[i % len(ENDPOINTS)], f"ghost-model-{i}", f"sk-client-{i}")
            assert status == 404
        text = fetch(metrics)
    finally:
        connection.close()
        gateway.stop()

    after = parse(text)
    assert set(after) == set(before), "new series appeared"  # label sets identical, values aside
    assert "ghost-model" not in text and "sk-client" not in text and "warm-up" not in text
    unknown = {"model": "unknown", "node": "none", "dialect": "openai", "status": "4xx"}
    # The Anthropic dialect answers an unknown model itself, before the gateway routes it, so
    # only the three OpenAI endpoints count requests (750 of the 1,000).
    assert (
        value(after, "cortex_requests_total", **unknown) - value(before, "cortex_requests_total", **unknown)
        == 750
    )
    assert value(after, "cortex_metrics_label_overflow_total") == 0


def _snapshot(models: list[str]) -> FleetPolled:
    node = NodeSnapshot(
        node="n1",
        up=True,
        draining=False,
        models=tuple(ModelSnapshot(model=m, state="ready", in_flight=0, queued=0) for m in models),
    )
    return FleetPolled(nodes=(node,))


def test_a_node_reporting_thousands_of_models_is_capped() -> None:
    sink = MetricsSink(catalogue=["listed"], nodes=["n1"])
    sink.handle(_snapshot([f"reported-{i}" for i in range(600)]))
    for i in range(600):
        sink.handle(finished(model=f"reported-{i}", duration_s=0.1))
    series = parse(render(sink.registry).decode())
    models = {labels["model"] for labels in series_of(series, "cortex_requests_total")}
    # Models a node reported are labels, up to the cap; the rest fold into one value.
    assert len(models) == MAX_MODELS + 1 and OVERFLOW in models
    assert value(series, "cortex_requests_total") == 600
    states = {labels["model"] for labels in series_of(series, "cortex_model_state")}
    assert len(states) == MAX_MODELS + 1
    assert value(series, "cortex_metrics_label_overflow_total", label="model") > 0
    # A model neither listed nor reported is "unknown", whatever its name.
    sink.handle(finished(model="made-up", duration_s=1))
    assert value(parse(render(sink.registry).decode()), "cortex_requests_total", model=UNKNOWN) == 1
