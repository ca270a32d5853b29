"""The neuron's harness-level figures: generation timing, load, sleep and wake, host memory."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.harness import Delta, Usage
from cortex_neuron.admission import AdmissionGate
from cortex_neuron.metrics import NeuronMetrics
from cortex_neuron.registry import ModelRecord, ModelRegistry
from tests.neuron.registries import model_registry
from tests.prometheus.exposition import parse, promtool_check, value


def _metrics(tmp_path: Path) -> tuple[NeuronMetrics, ModelRegistry]:
    registry = model_registry(tmp_path)
    return NeuronMetrics(registry), registry


def _record(model: str = "m") -> ModelRecord:
    profile = ModelProfile(id=model, harness="transformers", source="x/y")
    return ModelRecord(profile=profile, harness="transformers", gate=AdmissionGate(2, 3, 1.0), state="ready")


def test_a_generation_is_timed_from_its_slot_to_first_and_last_delta(tmp_path: Path) -> None:
    metrics, _ = _metrics(tmp_path)
    timer = metrics.timer("m", admitted=10.0)
    timer.delta(Delta(), 10.1)  # nothing visible yet (e.g. a partial character)
    timer.delta(Delta(text="a"), 10.5)
    timer.delta(Delta(text="b"), 11.0)
    timer.delta(Delta(finish_reason="length", usage=Usage(prompt_tokens=3, completion_tokens=11)), 12.5)
    timer.finished(12.5)
    got = parse(generate_latest(metrics.registry).decode())
    assert value(got, "cortex_neuron_time_to_first_token_seconds_sum", model="m") == 0.5
    assert value(got, "cortex_neuron_generation_duration_seconds_sum", model="m") == 2.5
    assert value(got, "cortex_neuron_output_tokens_per_second_sum", model="m") == 5.0  # 10 tokens in 2 s


def test_a_generation_that_ends_early_or_says_nothing_records_no_rate(tmp_path: Path) -> None:
    metrics, _ = _metrics(tmp_path)
    silent = metrics.timer("m", admitted=0.0)
    silent.delta(Delta(finish_reason="stop", usage=Usage(prompt_tokens=3, completion_tokens=0)), 1.0)
    silent.finished(1.0)
    got = parse(generate_latest(metrics.registry).decode())
    assert value(got, "cortex_neuron_generation_duration_seconds_count", model="m") == 1
    assert value(got, "cortex_neuron_time_to_first_token_seconds_count", model="m") == 0
    assert value(got, "cortex_neuron_output_tokens_per_second_count", model="m") == 0


def test_loads_sleeps_and_wakes_reported_by_the_registry_are_counted(tmp_path: Path) -> None:
    metrics, registry = _metrics(tmp_path)
    record = _record()
    assert registry.on_transition == metrics.transition
    registry.on_transition(record, "loaded", 2.0)
    registry.on_transition(_record("broken"), "load_failed", 0.5)
    registry.on_transition(record, "slept", 0.01)
    registry.on_transition(record, "woke", 0.2)
    got = parse(generate_latest(metrics.registry).decode())
    loads = "cortex_neuron_load_duration_seconds_count"
    assert value(got, loads, model="m", harness="transformers", result="ok") == 1
    assert value(got, loads, model="broken", result="error") == 1
    assert value(got, "cortex_neuron_model_sleeps_total", model="m") == 1
    assert value(got, "cortex_neuron_wake_duration_seconds_sum", model="m") == 0.2
    assert value(got, "cortex_neuron_rejections_total", model="m") == 0  # present from the first load
    assert ("cortex_neuron_rejections_total", frozenset({("model", "m")})) in got


def test_live_and_host_figures_are_read_at_scrape_time(tmp_path: Path) -> None:
    metrics, registry = _metrics(tmp_path)
    registry.records["m"] = _record()
    metrics.host.refresh(
        rss=100,
        available=200,
        budget=None,
        devices=[{"index": 1, "memory_used_bytes": 5, "memory_free_bytes": 6, "utilization_pct": 25}],
    )
    text = generate_latest(metrics.registry).decode()
    got = parse(text)
    assert value(got, "cortex_neuron_admission_max_in_flight", model="m") == 2
    assert value(got, "cortex_neuron_admission_max_queued", model="m") == 3
    assert value(got, "cortex_neuron_model_state", model="m", state="ready") == 1
    assert value(got, "cortex_neuron_resident_memory_bytes") == 100
    assert value(got, "cortex_neuron_memory_available_bytes") == 200
    assert not [key for key in got if key[0] == "cortex_neuron_memory_budget_bytes"]
    assert value(got, "cortex_neuron_device_memory_used_bytes", device="1") == 5
    assert value(got, "cortex_neuron_device_utilization_ratio", device="1") == 0.25
    promtool_check(text, "neuron")
