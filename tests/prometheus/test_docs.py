"""docs/metrics.md lists exactly what is exported; the dashboard and scrape example are well formed."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from cortex_neuron.metrics import NeuronMetrics
from cortex_prometheus.sink import MetricsSink
from tests.neuron.registries import model_registry
from tests.prometheus import dashboard
from tests.system_tools import tool_or_skip

DOCS = Path(__file__).resolve().parents[2] / "docs"
ROW = re.compile(r"^\| `(cortex_[a-z0-9_]+)` \| (counter|gauge|histogram) \| ([^|]+) \| ([^|]+) \| (.+) \|$")


def documented() -> dict[str, tuple[str, set[str]]]:
    """Family name (counters without ``_total``) to (type, labels), from the docs' tables."""
    found = {}
    for line in (DOCS / "metrics.md").read_text().splitlines():
        match = ROW.match(line)
        if match:
            name, kind, _, labels, _ = match.groups()
            family = name.removesuffix("_total") if kind == "counter" else name
            assert family not in found, f"{name} is documented twice"
            found[family] = (kind, {label.strip() for label in labels.split(",")} - {"—"})
    return found


def exported(tmp_path: Path) -> dict[str, str]:
    gateway = MetricsSink(catalogue=[], nodes=[]).registry
    neuron = NeuronMetrics(model_registry(tmp_path)).registry
    return {metric.name: metric.type for registry in (gateway, neuron) for metric in registry.collect()}


def test_every_exported_family_is_documented_with_its_type_and_nothing_else_is(tmp_path: Path) -> None:
    from cortex_neuron.metrics import ENGINE_METRICS

    docs, metrics = documented(), exported(tmp_path)
    kinds = {name: kind for name, (kind, _) in docs.items()}
    # Engine families appear only with an engine-backed harness (tests/neuron/test_engine_stats.py).
    engine = {name: kind for name, kind in kinds.items() if name.startswith("cortex_neuron_engine_")}
    assert engine == {name: kind for name, kind, _ in ENGINE_METRICS.values()}
    assert {name: kind for name, kind in kinds.items() if name not in engine} == metrics


BOUNDED_LABELS = {
    "model", "node", "dialect", "endpoint", "status", "reason", "stream", "result",
    "strategy", "error", "device", "state", "label", "kind", "harness",
    "router", "outcome",  # router names and outcomes: bounded like strategy and reason
}  # fmt: skip


def test_every_label_is_one_of_the_bounded_sets() -> None:
    """No request id, API key, user or prompt text can become a label."""
    for name, (_, labels) in documented().items():
        assert labels <= BOUNDED_LABELS, f"{name}: {labels - BOUNDED_LABELS}"


def test_the_dashboard_uses_a_datasource_variable_and_only_documented_metrics() -> None:
    board = dashboard.load()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [panel for panel in board["panels"] if panel["type"] != "row"]
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
    for variable in ("node", "model"):
        assert variables[variable]["datasource"]["uid"] == "${datasource}"
    docs = set(documented())
    for query in dashboard.queries(board):
        assert query.families <= docs, f"{query.panel}: {query.expr} names {query.families - docs}"
    rows = {panel["title"] for panel in board["panels"] if panel["type"] == "row"}
    assert rows == {
        "Fleet overview",
        "Latency and throughput per model",
        "TTFT and ITL heatmaps",
        "Tokens",
        "Queueing and loads",
        "Evictions and lifecycle",
        "Node health",
    }
    heatmaps = {p["title"]: p["targets"][0] for p in panels if p["type"] == "heatmap"}
    assert set(heatmaps) == {"Time to first token", "Inter-token latency"}
    assert all(target["format"] == "heatmap" for target in heatmaps.values())


def _promtool() -> str:
    return tool_or_skip("promtool", "apt-get install prometheus; scripts/install-system-deps")


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool checks PromQL offline when the queries are recording rules."""
    rules = [
        {"record": f"dashboard:query_{i}", "expr": query.expr}
        for i, query in enumerate(dashboard.queries(dashboard.load()))
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [_promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_scrape_example_is_a_valid_prometheus_config() -> None:
    result = subprocess.run(
        [_promtool(), "check", "config", "--syntax-only", str(DOCS / "grafana" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
