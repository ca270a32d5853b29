"""A third-party router, installed by entry point, chosen by ``[routing] strategy``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemons import Daemon
from tests.routing.conftest import neuron_counts, scrape
from tests.routing.raw_headers import http_json_with_headers

pytestmark = pytest.mark.slow


def test_a_router_plugin_gets_the_documented_facts_and_the_kernel_filters_its_answer(
    two_neurons: dict[str, Daemon], routed_gateway: Callable[..., Daemon], router_site: tuple[Path, Path]
) -> None:
    _, facts_log = router_site
    gateway = routed_gateway(two_neurons, 'strategy = "recorder"\nsession_headers = ["x-my-session"]')
    before = {name: neuron_counts(n) for name, n in two_neurons.items()}
    system = {"role": "system", "content": "You are terse."}
    bodies = [
        ({"x-my-session": "sess-42", "x-claude-code-request-class": "subagent"}, {}),
        ({}, {"prompt_cache_key": "pck-7", "user": "someone"}),
        ({}, {"user": "user-9"}),
        ({}, {}),
    ]
    for headers, extra in bodies:
        body = {
            "model": "tiny-chat",
            "messages": [system, {"role": "user", "content": "hi"}],
            "max_tokens": 2,
        }
        status, reply, _ = http_json_with_headers(
            f"{gateway.url}/v1/chat/completions", {**body, **extra}, headers
        )
        assert status == 200, reply

    facts = [json.loads(line) for line in facts_log.read_text().splitlines()]
    assert [f["session_key"] for f in facts] == ["sess-42", "pck-7", "user-9", None]
    assert [f["request_class"] for f in facts] == ["subagent", "main", "main", "main"]
    assert facts[3]["fingerprint"].startswith("fp:") and facts[0]["fingerprint"] is None
    for fact in facts:
        assert fact["model"] == "tiny-chat"
        assert sorted(r["name"] for r in fact["replicas"]) == ["n1", "n2"]
        assert {"in_flight", "polled_in_flight", "polled_queued", "engine"} <= set(fact["replicas"][0])
    # The router named a replica that does not exist and n2 twice: the kernel dropped both, and
    # every request went to n2, as the neurons themselves count.
    after = {name: neuron_counts(n) for name, n in two_neurons.items()}
    assert after["n2"][0] - before["n2"][0] == 4
    assert after["n1"][0] - before["n1"][0] == 0
    assert "no-such-node" in gateway.log_text()
    metrics = scrape(_metrics_url(gateway))
    refused = metrics[
        "cortex_gateway_routing_decisions_total", frozenset({("router", "recorder"), ("outcome", "refused")})
    ]
    assert refused == 4


def test_an_unknown_strategy_is_a_configuration_error(
    two_neurons: dict[str, Daemon], routed_gateway: Callable[..., Daemon]
) -> None:
    with pytest.raises(AssertionError, match="unknown routing strategy 'nope'"):
        routed_gateway(two_neurons, 'strategy = "nope"')


def _metrics_url(gateway: Daemon) -> str:
    import re

    config = next(gateway.log.parent.glob("cortex.toml")).read_text()
    listen = re.search(r'metrics_listen = "([^"]+)"', config)
    assert listen is not None
    return "http://" + listen.group(1) + "/metrics"
