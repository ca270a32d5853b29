"""The sink turns each event into exactly the series changes it stands for (no processes here)."""

from __future__ import annotations

from typing import Any

import pytest

from cortex_kernel.events import (
    DefragRestarted,
    DeviceSnapshot,
    FleetPolled,
    ModelLoaded,
    ModelSnapshot,
    ModelUnloaded,
    NodeSnapshot,
    PollFailed,
)
from cortex_prometheus.exposition import render
from cortex_prometheus.request_metrics import output_rate
from cortex_prometheus.sink import MetricsSink
from tests.prometheus.events import finished
from tests.prometheus.exposition import Series, families, parse, promtool_check, series_of, value


@pytest.fixture
def sink() -> MetricsSink:
    return MetricsSink(catalogue=["m"], nodes=["n1", "n2"])


def series(sink: MetricsSink) -> Series:
    return parse(render(sink.registry).decode())


def test_a_streamed_request_fills_every_request_family(sink: MetricsSink) -> None:
    sink.handle(
        finished(
            streamed=True,
            duration_s=2.0,
            first_token_s=0.5,
            waited_s=0.25,
            cold_start=True,
            failovers=1,
            prompt_tokens=100,
            completion_tokens=31,
            cached_tokens=60,
            inter_token_s=(0.05, 0.05, 0.2),
        )
    )
    got = series(sink)
    at = {"model": "m", "node": "n1", "dialect": "openai"}
    assert value(got, "cortex_requests_total", **at, endpoint="chat", status="2xx") == 1
    assert value(got, "cortex_request_errors_total") == 0
    assert value(got, "cortex_request_duration_seconds_sum", **at, status="2xx") == 2.0
    assert value(got, "cortex_request_duration_seconds_bucket", **at, le="2.5") == 1
    assert value(got, "cortex_request_duration_seconds_bucket", **at, le="1.0") == 0
    assert value(got, "cortex_time_to_first_token_seconds_sum", **at, stream="true") == 0.5
    assert value(got, "cortex_inter_token_latency_seconds_count", **at) == 3
    assert value(got, "cortex_inter_token_latency_seconds_bucket", **at, le="0.05") == 2
    assert value(got, "cortex_output_tokens_per_second_sum", **at) == 20.0  # 30 tokens in 1.5 s
    assert value(got, "cortex_prompt_tokens_total", **at) == 100
    assert value(got, "cortex_completion_tokens_total", **at) == 31
    assert value(got, "cortex_cached_prompt_tokens_total", **at) == 60
    assert value(got, "cortex_request_prompt_tokens_bucket", **at, le="100.0") == 1
    assert value(got, "cortex_request_completion_tokens_bucket", **at, le="20.0") == 0
    assert value(got, "cortex_request_wait_seconds_sum", **at) == 0.25
    assert value(got, "cortex_cold_starts_total", **at) == 1
    assert value(got, "cortex_failovers_total", **at) == 1
    assert value(got, "cortex_direct_requests_total", **at) == 0  # present at zero: the lane's


def test_requests_on_the_direct_path_are_counted(sink: MetricsSink) -> None:
    """A routed request answered from the sockets' callbacks counts; one the lane answered not."""
    sink.handle(finished(direct=True))
    sink.handle(finished(direct=True))
    sink.handle(finished(direct=False))
    sink.handle(finished(model="unknown", node=None, status=401, error="invalid_api_key"))
    got = series(sink)
    at = {"model": "m", "node": "n1", "dialect": "openai"}
    assert value(got, "cortex_direct_requests_total", **at) == 2
    assert value(got, "cortex_requests_total", **at, endpoint="chat", status="2xx") == 3


def test_failures_are_counted_by_reason_and_kept_out_of_latency_and_tokens(sink: MetricsSink) -> None:
    sink.handle(finished(model="unknown", node=None, status=404, error="model_not_found", duration_s=0.001))
    sink.handle(finished(status=503, error="upstream_503", prompt_tokens=3, first_token_s=0.1))
    sink.handle(finished(status=502, error=None))
    got = series(sink)
    unrouted = {"model": "unknown", "node": "none", "dialect": "openai", "endpoint": "chat"}
    assert value(got, "cortex_requests_total", **unrouted, status="4xx") == 1
    assert value(got, "cortex_request_errors_total", **unrouted, reason="model_not_found") == 1
    assert value(got, "cortex_request_errors_total", model="m", reason="upstream_503") == 1
    assert value(got, "cortex_request_errors_total", model="m", reason="http_502") == 1
    assert value(got, "cortex_request_duration_seconds_count", status="5xx") == 2
    assert value(got, "cortex_request_wait_seconds_count", model="unknown") == 0  # never routed
    assert value(got, "cortex_request_wait_seconds_count", model="m") == 2
    for family in ("cortex_time_to_first_token_seconds_count", "cortex_prompt_tokens_total"):
        assert value(got, family) == 0


def test_only_generation_endpoints_feed_generation_histograms(sink: MetricsSink) -> None:
    sink.handle(finished(endpoint="/v1/embeddings", prompt_tokens=9, completion_tokens=0, first_token_s=0.2))
    sink.handle(finished(endpoint="/v1/count_tokens", dialect="anthropic", first_token_s=0.1))
    sink.handle(finished(endpoint="/v1/something-new", first_token_s=0.1))
    got = series(sink)
    assert value(got, "cortex_requests_total", endpoint="embeddings") == 1
    assert value(got, "cortex_requests_total", endpoint="count_tokens", dialect="anthropic") == 1
    assert value(got, "cortex_requests_total", endpoint="other") == 1
    assert value(got, "cortex_prompt_tokens_total") == 9
    assert value(got, "cortex_time_to_first_token_seconds_count") == 0
    assert value(got, "cortex_request_completion_tokens_count") == 0


@pytest.mark.parametrize(
    ("fields", "rate"),
    [
        ({"streamed": True, "first_token_s": 1.0, "duration_s": 3.0, "completion_tokens": 11}, 5.0),
        ({"streamed": False, "first_token_s": 2.0, "duration_s": 2.0, "completion_tokens": 10}, 5.0),
        ({"streamed": True, "first_token_s": 0.5, "duration_s": 0.5, "completion_tokens": 4}, 8.0),
        ({"streamed": True, "first_token_s": 0.5, "duration_s": 2.0, "completion_tokens": 1}, 0.5),
        ({"streamed": True, "first_token_s": 0.5, "duration_s": 2.0, "completion_tokens": 0}, None),
        ({"streamed": False, "duration_s": 0.0, "completion_tokens": 3}, None),
    ],
)
def test_output_rate_excludes_the_first_token_only_when_streamed(
    fields: dict[str, Any], rate: float | None
) -> None:
    assert output_rate(finished(**fields)) == rate


def test_lifecycle_events_count_loads_unloads_evictions_defrags_and_poll_failures(sink: MetricsSink) -> None:
    assert value(series(sink), "cortex_defrag_restarts_total", node="n2") == 0  # present from the start
    sink.handle(ModelLoaded(node="n1", model="m", seconds=3.0, ok=True))
    sink.handle(ModelLoaded(node="n1", model="m", seconds=0.2, ok=False))
    sink.handle(ModelUnloaded(node="n1", model="m", reason="requested"))
    sink.handle(ModelUnloaded(node="n1", model="m", reason="evicted", strategy="lru"))
    sink.handle(DefragRestarted(node="n1"))
    sink.handle(PollFailed(node="n2", error="ClientConnectorError"))
    sink.handle(PollFailed(node="n2", error="ClientConnectorError"))
    got = series(sink)
    assert value(got, "cortex_model_load_duration_seconds_count", node="n1", model="m", result="ok") == 1
    assert value(got, "cortex_model_load_duration_seconds_sum", result="ok") == 3.0
    assert value(got, "cortex_model_load_duration_seconds_count", result="error") == 1
    assert value(got, "cortex_model_unloads_total", reason="requested") == 1
    assert value(got, "cortex_model_unloads_total", reason="evicted") == 1
    assert value(got, "cortex_evictions_total", node="n1", model="m", strategy="lru") == 1
    assert value(got, "cortex_evictions_total") == 1
    assert value(got, "cortex_defrag_restarts_total", node="n1") == 1
    assert value(got, "cortex_poll_failures_total", node="n2", error="ClientConnectorError") == 2


def _fleet(*models: ModelSnapshot, up: bool = True) -> FleetPolled:
    devices = (
        DeviceSnapshot(index=0, memory_used_bytes=3 << 30, memory_free_bytes=5 << 30, utilization_pct=42),
    )
    return FleetPolled(
        nodes=(NodeSnapshot(node="n1", up=up, draining=False, devices=devices, models=models),)
    )


def test_fleet_gauges_follow_the_last_poll_and_drop_what_left(sink: MetricsSink) -> None:
    sink.handle(
        _fleet(
            ModelSnapshot(model="m", state="ready", in_flight=5, queued=2),
            ModelSnapshot(model="reported", state="loading", in_flight=0, queued=0),
        )
    )
    got = series(sink)
    assert value(got, "cortex_node_up", node="n1") == 1
    assert value(got, "cortex_device_memory_used_bytes", node="n1", device="0") == 3 << 30
    assert value(got, "cortex_device_memory_free_bytes", node="n1", device="0") == 5 << 30
    assert value(got, "cortex_device_utilization_ratio", node="n1", device="0") == 0.42
    assert value(got, "cortex_model_state", model="m", state="ready") == 1
    assert value(got, "cortex_model_state", model="m") == 1  # exactly one state is 1
    assert value(got, "cortex_model_state", model="reported", state="loading") == 1  # learnt from the node
    assert value(got, "cortex_model_requests_in_flight", model="m") == 3  # the snapshot's load less the queue
    assert value(got, "cortex_model_requests_queued", model="m") == 2
    assert value(got, "cortex_fleet_last_poll_timestamp_seconds") > 0

    sink.handle(_fleet(ModelSnapshot(model="m", state="weird", in_flight=0, queued=0), up=False))
    got = series(sink)
    assert value(got, "cortex_node_up", node="n1") == 0
    assert {labels["model"] for labels in series_of(got, "cortex_model_state")} == {"m"}
    assert value(got, "cortex_model_state", model="m", state="_other") == 1


def test_models_folded_into_one_label_are_summed_not_repeated(sink: MetricsSink) -> None:
    sink.handle(
        _fleet(
            ModelSnapshot(model="unknown", state="ready", in_flight=1, queued=0),
            ModelSnapshot(model="unknown", state="ready", in_flight=2, queued=1),
        )
    )
    text = render(sink.registry).decode()
    promtool_check(text, "folded fleet")
    assert value(parse(text), "cortex_model_requests_in_flight", model="unknown") == 2


def test_the_exposition_has_no_created_series_and_passes_promtool(sink: MetricsSink) -> None:
    sink.handle(
        finished(streamed=True, first_token_s=0.1, prompt_tokens=1, completion_tokens=2, inter_token_s=(0.1,))
    )
    sink.handle(finished(status=500, error="internal_error"))
    sink.handle(_fleet(ModelSnapshot(model="m", state="ready", in_flight=0, queued=0)))
    for event in (
        ModelLoaded(node="n1", model="m", seconds=1.0, ok=True),
        ModelUnloaded(node="n1", model="m", reason="evicted", strategy="lru"),
        DefragRestarted(node="n1"),
        PollFailed(node="n2", error="TimeoutError"),
    ):
        sink.handle(event)
    text = render(sink.registry).decode()
    assert "_created" not in text
    assert all(
        name.startswith("cortex_") and not name.startswith("cortex_neuron_") for name in families(text)
    )
    promtool_check(text, "gateway")


def test_a_model_learnt_after_its_first_request_is_labelled_from_then_on(sink: MetricsSink) -> None:
    # The sink keeps each request's labels for the next one alike (issue #17), never an unknown's.
    sink.handle(finished(model="later"))
    sink.handle(_fleet(ModelSnapshot(model="later", state="ready", in_flight=0, queued=0)))
    sink.handle(finished(model="later"))
    sink.handle(finished(model="later"))
    got = series(sink)
    assert value(got, "cortex_requests_total", model="unknown", endpoint="chat") == 1
    assert value(got, "cortex_requests_total", model="later", endpoint="chat") == 2


def test_a_folded_label_is_counted_at_every_request_that_folds_it(sink: MetricsSink) -> None:
    dialects = [f"dialect-{n}" for n in range(16)]  # 2 preset + 14 fill the label's 16 values
    for dialect in dialects:
        sink.handle(finished(dialect=dialect))
    for _ in range(3):
        sink.handle(finished(dialect="one-too-many"))
    got = series(sink)
    assert value(got, "cortex_requests_total", dialect="_other") == 3 + 2  # 16 named - 14 admitted
    assert value(got, "cortex_metrics_label_overflow_total", label="dialect") == 5
    assert value(got, "cortex_requests_total", dialect="dialect-0") == 1
