"""A labelled counter for a single-threaded writer: a plain float per series, no lock per ``inc``.

``prometheus_client.Counter.inc`` checks the child, checks the amount and takes a lock for every
increment, which is built for threads sharing a metric. The gateway's per-request counters are
fed from the event loop only (the metrics sink, once per finished request, six increments), as
the :class:`~cortex_prometheus.folded_histogram.FoldedHistogram` families are, so this keeps
each series as a number and renders exactly the samples a ``Counter`` with the same name and
labels renders: ``_total`` and ``_created``.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

from cortex_prometheus.folded_family import FoldedChild, FoldedFamily


class FoldedCount(FoldedChild):
    """One label set's total."""

    __slots__ = ("total",)

    def __init__(self) -> None:
        super().__init__()
        self.total = 0.0

    def inc(self, amount: float = 1) -> None:
        """Add ``amount``: never negative here (token counts, requests), as the client library
        insists, so no check per call."""
        self.total += amount


class FoldedCounter(FoldedFamily[FoldedCount]):
    """What ``Counter(name, documentation, labelnames, registry=...)`` exports, for a writer on
    one thread. ``name`` is given without ``_total``, as the client library takes it."""

    kind = "counter"

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], *, registry: CollectorRegistry
    ) -> None:
        super().__init__(name.removesuffix("_total"), documentation, labelnames, registry=registry)

    def _new_child(self) -> FoldedCount:
        return FoldedCount()

    def _add_samples(self, metric: Metric, labels: dict[str, str], series: FoldedCount) -> None:
        metric.add_sample(f"{self._name}_total", labels, series.total)
