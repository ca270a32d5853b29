"""The plugin's wiring: one sink per gateway, its own registry, served on the metrics listener."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Sequence

import pluggy
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

import cortex_evictors.plugin as evictors
import cortex_gateway.plugin as gateway
import cortex_prometheus.plugin as prometheus
from cortex_kernel.app import collect_parts, create_app
from cortex_kernel.config.loader import LoadedConfig
from cortex_kernel.config.schema import Catalogue, CortexConfig, ModelProfile, NeuronEndpoint
from cortex_kernel.kernel import Kernel
from tests.prometheus.exposition import parse, value


def _kernel(pm: pluggy.PluginManager, neurons: Sequence[str] = ()) -> Kernel:
    config = CortexConfig(
        neurons=[NeuronEndpoint(name=name, endpoint="http://127.0.0.1:9") for name in neurons]
    )
    catalogue = Catalogue(models=[ModelProfile(id="listed", harness="transformers", source="x/y")])
    return Kernel(role="gateway", config=LoadedConfig("cortex", config, None, {}, catalogue=catalogue), pm=pm)


def test_hooks_hand_out_one_sink_per_kernel_with_a_registry_of_its_own(
    cortex_pm: pluggy.PluginManager,
) -> None:
    cortex_pm.register(prometheus, name="prometheus")
    kernel = _kernel(cortex_pm)
    [sinks] = [s for s in cortex_pm.hook.register_event_sinks(role="gateway", kernel=kernel) if s]
    [parts] = [p for p in cortex_pm.hook.register_app_parts(role="gateway", kernel=kernel) if p]
    assert sinks[0] is prometheus.sink_for(kernel)
    assert [(part.name, part.listener) for part in parts] == [("prometheus", "metrics")]
    assert sinks[0].registry is not REGISTRY
    assert sinks[0] is not prometheus.sink_for(_kernel(cortex_pm))
    assert cortex_pm.hook.register_event_sinks(role="neuron", kernel=kernel) == []
    assert cortex_pm.hook.register_app_parts(role="neuron", kernel=kernel) == []


def test_a_sink_lives_only_as_long_as_its_kernel(cortex_pm: pluggy.PluginManager) -> None:
    kernel = _kernel(cortex_pm)
    sink = weakref.ref(prometheus.sink_for(kernel))
    assert kernel.stash[prometheus.SINK] is sink()
    del kernel
    gc.collect()
    assert sink() is None


def test_metrics_are_served_on_the_metrics_app_only(cortex_pm: pluggy.PluginManager) -> None:
    for name, plugin in (("gateway", gateway), ("evictors", evictors), ("prometheus", prometheus)):
        cortex_pm.register(plugin, name=name)
    kernel = _kernel(cortex_pm, neurons=["n1"])
    parts = collect_parts(kernel)
    with (
        TestClient(create_app(kernel, parts)) as api,
        TestClient(create_app(kernel, parts, "metrics")) as metrics,
    ):
        assert api.get("/metrics").status_code == 404
        reply = api.post("/v1/chat/completions", json={"model": "client-made-up", "messages": []})
        assert reply.status_code == 404
        scraped = metrics.get("/metrics")
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    got = parse(scraped.text)
    assert value(got, "cortex_requests_total", model="unknown", node="none", status="4xx") == 1
    assert value(got, "cortex_defrag_restarts_total", node="n1") == 0
    assert value(got, "cortex_node_up", node="n1") == 0  # polled once at start-up: nothing listens
    assert value(got, "cortex_poll_failures_total", node="n1") >= 1
