"""Label values kept to bounded sets.

Every series Prometheus has ever seen costs it memory until retention drops it, so a label fed
from outside the gateway (a client's model name, an error code, a node's model list, a third
party's dialect) must not be able to create series without end. Values are admitted first come,
up to a fixed number per label; later newcomers are folded into ``_other`` and counted in
``cortex_metrics_label_overflow_total`` so the fold is visible. Model names must also be known:
in the catalogue or reported by a node; anything else is ``unknown``, whatever the client sent.
Request ids, API keys and free text are never labels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

OVERFLOW = "_other"
UNKNOWN = "unknown"
NO_NODE = "none"

# The upstream operation a request used (the neuron path the gateway opened), by short name.
ENDPOINTS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/count_tokens": "count_tokens",
}
GENERATION_ENDPOINTS = frozenset({"chat", "completions"})

MODEL_STATES = ("loading", "ready", "sleeping", "unloading", "failed")

# Generous for any real fleet, small enough that a runaway source cannot hurt Prometheus.
MAX_MODELS = 256
MAX_NODES = 256
MAX_DEVICES = 64
MAX_CODES = 64
MAX_SMALL = 16


def endpoint_label(path: str) -> str:
    return ENDPOINTS.get(path, "other")


def status_class(status: int) -> str:
    """``2xx`` … ``5xx``: the class, never the exact code, keeps the label to five values."""
    return f"{min(max(status // 100, 1), 5)}xx"


class BoundedLabel:
    """The values one label may take: the first ``limit`` distinct ones, then ``_other``."""

    def __init__(self, name: str, limit: int, overflow: Counter, preset: Iterable[str] = ()) -> None:
        self.name = name
        self.limit = limit
        self._overflow = overflow.labels(name)
        self._seen: set[str] = set()
        for value in preset:
            self(value)

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self.limit:
            self._overflow.inc()
            return OVERFLOW
        self._seen.add(value)
        return value


class ModelLabel:
    """Model ids as label values: only those the catalogue names or a node has reported."""

    def __init__(self, bounded: BoundedLabel, catalogue: Iterable[str]) -> None:
        self._bounded = bounded
        self._known = set(catalogue)

    def learn(self, model_id: str) -> None:
        """Accept ``model_id`` from now on (a node reported it); bounded like the label itself."""
        if model_id not in self._known and len(self._known) < 4 * self._bounded.limit:
            self._known.add(model_id)

    def __call__(self, model_id: str) -> str:
        if model_id == UNKNOWN or model_id not in self._known:
            return UNKNOWN
        return self._bounded(model_id)


@dataclass(frozen=True)
class Guards:
    """One bounded label per external source, shared by every metric that uses that label."""

    model: ModelLabel
    node: BoundedLabel
    dialect: BoundedLabel
    reason: BoundedLabel
    device: BoundedLabel
    error: BoundedLabel
    strategy: BoundedLabel

    @classmethod
    def build(cls, registry: CollectorRegistry, catalogue: Iterable[str], nodes: Iterable[str]) -> Guards:
        overflow = Counter(
            "cortex_metrics_label_overflow",
            "Label values folded into _other because the label reached its cap of distinct values.",
            ["label"],
            registry=registry,
        )
        guards = cls(
            model=ModelLabel(BoundedLabel("model", MAX_MODELS, overflow), catalogue),
            node=BoundedLabel("node", MAX_NODES, overflow, preset=nodes),
            dialect=BoundedLabel("dialect", MAX_SMALL, overflow, preset=("openai", "anthropic")),
            reason=BoundedLabel("reason", MAX_CODES, overflow),
            device=BoundedLabel("device", MAX_DEVICES, overflow),
            error=BoundedLabel("error", MAX_SMALL, overflow),
            strategy=BoundedLabel("strategy", MAX_SMALL, overflow),
        )
        for name in ("model", "node", "dialect", "reason", "device", "error", "strategy"):
            overflow.labels(name)  # present at zero, so an alert on it has a series to watch
        return guards

    def node_or_none(self, node: str | None) -> str:
        return NO_NODE if node is None else self.node(node)
