"""Real traffic through a real gateway to a real neuron, and what each /metrics must show for it.

The official SDKs send OpenAI requests (plain and streamed) and Anthropic ones (plain and
streamed) to model ``a``, which is loaded cold by the first; ``b`` and ``c`` are loaded cold
after it, and ``c`` evicts ``a`` (the least recently used); an unknown model is a 404. Both
expositions are then checked with promtool.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anthropic
import openai
import pytest

from tests.daemons import Daemon
from tests.prometheus.exposition import delta, families, parse, promtool_check, series_of, value
from tests.prometheus.fleet import anthropic_message, openai_chat, sleep_and_wake, start_fleet

pytestmark = pytest.mark.slow


def test_sdk_traffic_moves_every_gateway_and_neuron_series_by_exactly_what_it_did(
    start_neuron: Callable[..., Daemon],
    start_gateway: Callable[..., Daemon],
    tiny_chat_model: Path,
    openai_client: Callable[..., openai.OpenAI],
) -> None:
    fleet = start_fleet(start_neuron, start_gateway, tiny_chat_model)
    before, neuron_before = parse(fleet.gateway_metrics()), parse(fleet.neuron_metrics())

    client = openai_client(f"{fleet.gateway.url}/v1")
    used = {
        ("a", "openai", False): openai_chat(client, "a", stream=False),  # cold load of a
        ("a", "openai", True): openai_chat(client, "a", stream=True),
    }
    with anthropic.Anthropic(base_url=fleet.gateway.url, api_key="k", max_retries=0, timeout=120) as sdk:
        used["a", "anthropic", False] = anthropic_message(sdk, "a", stream=False)
        used["a", "anthropic", True] = anthropic_message(sdk, "a", stream=True)
    used["b", "openai", False] = openai_chat(client, "b", stream=False)  # cold load of b
    fleet.settle()
    used["c", "openai", False] = openai_chat(client, "c", stream=False)  # cold, evicts a
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    sleep_and_wake(fleet.neuron, "b")

    # A poll that began after the traffic: an earlier one (taken while c's request was in
    # flight) already shows b and c ready and a gone, but counts c's request in flight.
    fleet.settle()
    after = fleet.wait_for_poll(
        lambda s: (
            value(s, "cortex_model_state", node="n1", model="c", state="ready") == 1
            and value(s, "cortex_model_state", node="n1", model="b", state="ready") == 1  # awake again
            and all(labels["model"] != "a" for labels in series_of(s, "cortex_model_state"))
        )
    )

    def moved(name: str, **labels: str) -> float:
        return delta(before, after, name, **labels)

    # Requests by model, node, dialect, endpoint and status class; the 404 reached no node.
    for model, dialect, count in (
        ("a", "openai", 2),
        ("a", "anthropic", 2),
        ("b", "openai", 1),
        ("c", "openai", 1),
    ):
        at = {"model": model, "node": "n1", "dialect": dialect}
        assert moved("cortex_requests_total", **at, endpoint="chat", status="2xx") == count
        # A streamed Anthropic message is counted first, so message_start has the real input
        # tokens: one count_tokens request beside its chat request.
        counted = moved("cortex_requests_total", **at, endpoint="count_tokens", status="2xx")
        assert counted == (1 if dialect == "anthropic" else 0)
        assert moved("cortex_request_duration_seconds_count", **at, status="2xx") == count + counted
        assert moved("cortex_request_wait_seconds_count", **at) == count + counted
        assert moved("cortex_failovers_total", **at) == 0
        prompt = sum(u.prompt for (m, d, _), u in used.items() if (m, d) == (model, dialect))
        completion = sum(u.completion for (m, d, _), u in used.items() if (m, d) == (model, dialect))
        assert moved("cortex_prompt_tokens_total", **at) == prompt
        assert moved("cortex_completion_tokens_total", **at) == completion
        cached = sum(u.cached for (m, d, _), u in used.items() if (m, d) == (model, dialect))
        assert moved("cortex_cached_prompt_tokens_total", **at) == cached
        assert moved("cortex_request_prompt_tokens_count", **at) == count
        assert moved("cortex_request_prompt_tokens_sum", **at) == prompt
        assert moved("cortex_request_completion_tokens_count", **at) == count
        assert moved("cortex_request_completion_tokens_sum", **at) == completion
        # A rate needs at least one token (the SDKs' usage says how many each reply had).
        rated = sum(1 for (m, d, _), u in used.items() if (m, d) == (model, dialect) and u.completion > 0)
        assert moved("cortex_output_tokens_per_second_count", **at) == rated
    assert moved("cortex_requests_total", status="2xx") == 6 + 1  # the one count_tokens above
    unknown = {"model": "unknown", "node": "none", "dialect": "openai", "endpoint": "chat"}
    assert moved("cortex_requests_total", **unknown, status="4xx") == 1
    assert moved("cortex_request_errors_total", **unknown, reason="model_not_found") == 1
    assert moved("cortex_request_errors_total") == 1
    assert moved("cortex_request_wait_seconds_count", model="unknown") == 0  # never routed

    # Time to first token: plain OpenAI replies are not streamed; the Anthropic dialect always
    # streams from the neuron (it folds the stream itself for a plain client).
    ttft = "cortex_time_to_first_token_seconds_count"
    assert moved(ttft, model="a", dialect="openai", stream="false") == 1
    assert moved(ttft, model="a", dialect="openai", stream="true") == 1
    assert moved(ttft, model="a", dialect="anthropic", stream="true") == 2
    assert moved(ttft, model="b", stream="false") == moved(ttft, model="c", stream="false") == 1
    assert moved(ttft) == 6
    # Inter-token gaps come only from streamed replies: at least one gap each, at most one per
    # relayed SSE frame (role, tokens, finish, usage, [DONE]).
    gaps = moved("cortex_inter_token_latency_seconds_count", model="a", dialect="openai")
    assert 1 <= gaps <= used["a", "openai", True].completion + 3
    assert moved("cortex_inter_token_latency_seconds_count", model="a", dialect="anthropic") >= 2
    assert moved("cortex_inter_token_latency_seconds_count", model="b") == 0

    # Cold starts: the first request for each of a, b and c waited for its model to load.
    assert moved("cortex_cold_starts_total", model="a", dialect="openai") == 1
    assert moved("cortex_cold_starts_total", model="a", dialect="anthropic") == 0
    assert moved("cortex_cold_starts_total", model="b") == moved("cortex_cold_starts_total", model="c") == 1
    assert value(after, "cortex_request_wait_seconds_sum", model="c") > 0

    # Lifecycle: three loads, one eviction of a by the lru strategy.
    for model in ("a", "b", "c"):
        assert moved("cortex_model_load_duration_seconds_count", node="n1", model=model, result="ok") == 1
    assert moved("cortex_model_load_duration_seconds_count", result="error") == 0
    assert moved("cortex_model_unloads_total", node="n1", model="a", reason="evicted") == 1
    assert moved("cortex_model_unloads_total") == 1
    assert moved("cortex_evictions_total", node="n1", model="a", strategy="lru") == 1
    assert moved("cortex_evictions_total") == 1
    assert value(after, "cortex_defrag_restarts_total", node="n1") == 0  # present at zero
    assert moved("cortex_poll_failures_total") == 0
    assert moved("cortex_metrics_label_overflow_total") == 0

    # Fleet gauges from the last poll: b and c resident, nothing in flight.
    assert value(after, "cortex_node_up", node="n1") == 1
    assert value(after, "cortex_node_draining", node="n1") == 0
    for model in ("b", "c"):
        assert value(after, "cortex_model_state", node="n1", model=model, state="ready") == 1
        assert value(after, "cortex_model_state", node="n1", model=model) == 1  # one state at a time
        assert value(after, "cortex_model_requests_in_flight", node="n1", model=model) == 0
        assert value(after, "cortex_model_requests_queued", node="n1", model=model) == 0
    assert value(after, "cortex_fleet_last_poll_timestamp_seconds") > 0

    # The neuron's own view: harness-level figures per generation, loads, sleeps and wakes.
    neuron_text = fleet.neuron_metrics()
    neuron_after = parse(neuron_text)

    def neuron_moved(name: str, **labels: str) -> float:
        return delta(neuron_before, neuron_after, name, **labels)

    for model, generations in (("a", 4), ("b", 1), ("c", 1)):
        assert neuron_moved("cortex_neuron_requests_total", model=model, endpoint="chat", status="2xx") == (
            generations
        )
        for histogram in (
            "cortex_neuron_queue_wait_seconds_count",
            "cortex_neuron_generation_duration_seconds_count",
        ):
            assert neuron_moved(histogram, model=model) == generations, histogram
        replies = [u for (m, _, _), u in used.items() if m == model]
        first_tokens = sum(1 for u in replies if u.completion > 0)
        assert neuron_moved("cortex_neuron_time_to_first_token_seconds_count", model=model) == first_tokens
        decoded = sum(1 for u in replies if u.completion > 1)  # a decode rate needs a second token
        assert neuron_moved("cortex_neuron_output_tokens_per_second_count", model=model) == decoded
        completion = sum(u.completion for u in replies)
        assert neuron_moved("cortex_neuron_tokens_total", model=model, kind="completion") == completion
        labels = {"model": model, "harness": "transformers", "result": "ok"}
        assert neuron_moved("cortex_neuron_load_duration_seconds_count", **labels) == 1
    assert neuron_moved("cortex_neuron_model_sleeps_total", model="b") == 1
    assert neuron_moved("cortex_neuron_wake_duration_seconds_count", model="b") == 1
    assert value(neuron_after, "cortex_neuron_model_state", model="b", state="ready") == 1
    assert value(neuron_after, "cortex_neuron_memory_budget_bytes") == 130 * 1024 * 1024
    assert value(neuron_after, "cortex_neuron_resident_memory_bytes") > 0
    assert value(neuron_after, "cortex_neuron_admission_max_in_flight", model="c") >= 1

    # Names never clash: the gateway's families and the neuron's are disjoint.
    gateway_text = fleet.gateway_metrics()
    assert not set(families(gateway_text)) & set(families(neuron_text))
    assert all(name.startswith("cortex_neuron_") for name in families(neuron_text))
    promtool_check(gateway_text, "gateway")
    promtool_check(neuron_text, "neuron")
