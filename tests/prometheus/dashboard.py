"""The Grafana dashboard in docs/grafana as a list of PromQL queries Prometheus can run."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "cortex-kernel.json"

# What Grafana would put in place of its variables, for a query sent straight to Prometheus.
SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$model": ".*",
    "$node": ".*",
}
METRIC = re.compile(r"\b(cortex_[a-z0-9_]+)\b")
SUFFIXES = ("_bucket", "_count", "_sum", "_total")
# Series that exist only on hosts with GPUs (NVML); a CPU-only test host has none.
DEVICE_ONLY = re.compile(r"^cortex_(neuron_)?device_")


@dataclass(frozen=True)
class Query:
    panel: str
    expr: str

    @property
    def metrics(self) -> set[str]:
        return set(METRIC.findall(self.expr))

    @property
    def families(self) -> set[str]:
        """The metric families the query reads, as ``# TYPE`` lines name them."""
        found = set()
        for name in self.metrics:
            for suffix in SUFFIXES:
                if name.endswith(suffix):
                    name = name.removesuffix(suffix)
                    break
            found.add(name)
        return found

    @property
    def device_only(self) -> bool:
        return all(DEVICE_ONLY.match(name) for name in self.metrics)


def load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def substitute(expr: str) -> str:
    for variable, value in SUBSTITUTIONS.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable was left in {expr!r}"
    return expr


def queries(dashboard: dict[str, Any]) -> list[Query]:
    """Every panel target, plus each template variable's ``label_values`` as a PromQL query."""
    found = [
        Query(panel["title"], substitute(target["expr"]))
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["query"]["query"])
            assert match, f"variable {variable['name']} is not a label_values() query"
            metric, label = match.groups()
            found.append(Query(f"variable {variable['name']}", f"group by ({label}) ({metric})"))
    return found
