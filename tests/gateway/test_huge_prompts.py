"""Huge prompts through the gateway's Anthropic count route: a fast "prompt is too long", and the
neuron behind it keeps its memory bounded and still exits on SIGTERM within its bound."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from tests.daemons import Daemon, http_json, wait_nodes_up
from tests.neuron.huge_prompts import HUGE, PEAK_GROWTH_BOUND, concurrently

pytestmark = pytest.mark.slow


def test_three_huge_anthropic_counts_get_prompt_too_long_and_leave_the_neuron_bounded(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon]
) -> None:
    neuron = start_neuron("shutdown_timeout_s = 10\n")
    status, _, _ = http_json(
        "POST", f"{neuron.url}/models/load", {"model": "tiny-chat", "wait": True}, timeout=120
    )
    assert status == 200
    gateway = start_gateway({"n1": neuron})
    wait_nodes_up(gateway, 1, timeout=30)  # polled every 2 s
    start_rss = http_json("GET", f"{neuron.url}/health")[1]["rss_bytes"]
    body = {
        "model": "tiny-chat",
        "messages": [{"role": "user", "content": "hello world " * (HUGE // 12)}],
    }

    results = concurrently(f"{gateway.url}/v1/messages/count_tokens", json.dumps(body).encode(), 3)

    assert len(results) == 3
    for status, reply, seconds in results:
        assert status == 400, reply
        assert reply["type"] == "error" and reply["error"]["type"] == "invalid_request_error", reply
        assert reply["error"]["message"].startswith("prompt is too long"), reply
        assert seconds < 30, f"a refusal took {seconds:.1f}s"
    after = http_json("GET", f"{neuron.url}/health")[1]
    assert after["max_rss_bytes"] - start_rss < PEAK_GROWTH_BOUND, (start_rss, after["max_rss_bytes"])
    assert after["models"]["tiny-chat"] == {"state": "ready", "in_flight": 0, "queued": 0}

    started = time.monotonic()
    assert neuron.stop(timeout=30) == 0
    assert time.monotonic() - started < 10 + 5
