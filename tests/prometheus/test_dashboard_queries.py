"""Every query of the Grafana dashboard, run by a real Prometheus scraping a real fleet.

A panel whose query does not parse, names a metric nobody exports, or returns nothing after
traffic that should feed it fails here, not on an operator's screen.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import anthropic
import openai
import pytest

from tests.daemons import Daemon, free_port, http_json
from tests.prometheus import dashboard
from tests.prometheus.exposition import families, parse, value
from tests.prometheus.fleet import Fleet, anthropic_message, openai_chat, sleep_and_wake, start_fleet
from tests.prometheus.server import PrometheusServer

pytestmark = pytest.mark.slow


def _round(fleet: Fleet, client: openai.OpenAI, sdk: anthropic.Anthropic, models: list[str]) -> None:
    """Traffic that feeds every panel: both dialects, streamed and not, cold loads, an error, a
    sleep and a wake. Each later model waits for a fresh poll first, so eviction sees the earlier
    ones idle."""
    first, *others = models
    openai_chat(client, first, stream=False)
    openai_chat(client, first, stream=True)
    anthropic_message(sdk, first, stream=False)
    anthropic_message(sdk, first, stream=True)
    for model in others:
        fleet.settle()
        openai_chat(client, model, stream=False)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    sleep_and_wake(fleet.neuron, models[-1])


def test_every_dashboard_query_parses_and_returns_data(
    start_neuron: Callable[..., Daemon],
    start_gateway: Callable[..., Daemon],
    tiny_chat_model: Path,
    openai_client: Callable[..., openai.OpenAI],
    tmp_path: Path,
) -> None:
    down = f'\n[[neurons]]\nname = "n2"\nendpoint = "http://127.0.0.1:{free_port()}"\n'
    fleet = start_fleet(start_neuron, start_gateway, tiny_chat_model, nodes=down)
    neuron_address = fleet.neuron.url.removeprefix("http://")
    server = PrometheusServer(
        tmp_path / "prometheus",
        {
            "cortex-gateway": [(f"127.0.0.1:{fleet.metrics_port}", {})],
            "cortex-neuron": [(neuron_address, {"node": "n1"})],
        },
    ).start()
    try:
        server.wait_until(
            'up{job=~"cortex-.*"}', lambda r: len(r) == 2 and all(s["value"][1] == "1" for s in r)
        )
        client = openai_client(f"{fleet.gateway.url}/v1")
        with anthropic.Anthropic(base_url=fleet.gateway.url, api_key="k", max_retries=0, timeout=120) as sdk:
            # Two rounds a few scrapes apart, so rates and quantiles see increases, not only
            # series that appeared already counted.
            _round(fleet, client, sdk, ["a", "b"])
            fleet.settle()
            # Series that already exist must grow within the rate window, or quantiles are NaN:
            # a streams again, c evicts b (a was just used), and b is loaded a second time.
            _round(fleet, client, sdk, ["a", "c", "b"])
        # 6 + 7 sent, and each round's streamed Anthropic message is counted first (count_tokens).
        assert value(parse(fleet.gateway_metrics()), "cortex_requests_total") == 13 + 2
        # Wait until Prometheus has scraped both targets since the traffic ended.
        ended = time.time()
        server.wait_until(
            'min(timestamp(up{job=~"cortex-.*"}))', lambda r: r and float(r[0]["value"][1]) > ended + 0.1
        )
        exported = set(families(fleet.gateway_metrics())) | set(families(fleet.neuron_metrics()))
        has_devices = bool(http_json("GET", f"{fleet.neuron.url}/health")[1]["devices"])

        failures, nan_only = [], []
        for query in dashboard.queries(dashboard.load()):
            missing = query.families - exported
            if missing:
                failures.append(f"{query.panel}: {query.expr} names unexported {sorted(missing)}")
                continue
            status, data = server.query(query.expr)
            if status != "success":
                failures.append(f"{query.panel}: {query.expr} failed: {data}")
            elif not data["result"] and not (query.device_only and not has_devices):
                failures.append(f"{query.panel}: {query.expr} returned no data")
            elif data["result"] and all(math.isnan(float(s["value"][1])) for s in data["result"]):
                nan_only.append(f"{query.panel}: {query.expr}")
        assert not failures, "\n".join(failures)
        assert not nan_only, "only NaN (no increase in the window):\n" + "\n".join(nan_only)
    finally:
        server.stop()
