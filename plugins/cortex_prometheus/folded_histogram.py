"""A labelled histogram fed a whole stream's worth of observations at once, without a lock each.

``prometheus_client.Histogram.observe`` takes two locks (the sum, then a bucket) and walks the
bucket list for every value, which is built for threads sharing a metric. The inter-token
histogram is fed from the event loop only, once per stream with every gap of that stream (64 at
a time for a 64-token stream), so it pays that price per relayed token for nothing. This keeps
each series as plain numbers in the one thread that writes and exposes them, finds a value's
bucket by bisection, and renders exactly the samples a ``Histogram`` with the same name, labels
and buckets renders: ``_bucket`` (cumulative, ``le`` spelled as the client library spells it),
``_count``, ``_sum`` and ``_created``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString

from cortex_prometheus.folded_family import FoldedChild, FoldedFamily


class FoldedSeries(FoldedChild):
    """One label set's counts: per-bucket (not cumulative) counts and the sum."""

    __slots__ = ("_bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        super().__init__()
        self._bounds = bounds
        self.counts = [0] * len(bounds)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self._bounds, value)] += 1
        self.total += value

    def observe_all(self, values: Iterable[float]) -> None:
        """Every value in order: the sum adds them in the order ``observe`` would, so it is the
        same float to the last bit."""
        counts, bounds, total = self.counts, self._bounds, self.total
        for value in values:
            counts[bisect.bisect_left(bounds, value)] += 1
            total += value
        self.total = total


class FoldedHistogram(FoldedFamily[FoldedSeries]):
    """What ``Histogram(name, documentation, labelnames, buckets=..., registry=...)`` exports,
    for a single-threaded writer. A value lands in the first bucket whose bound is at least the
    value, as in the client library (``value <= le``); values are finite (gaps of a monotonic
    clock)."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        bounds = [float(bound) for bound in buckets]
        if bounds != sorted(bounds) or not bounds:
            raise ValueError("buckets must be given in increasing order")
        if bounds[-1] != math.inf:
            bounds.append(math.inf)
        self._bounds = tuple(bounds)
        self._les = [floatToGoString(bound) for bound in bounds]  # type: ignore[no-untyped-call]
        self._with_sum = self._bounds[0] >= 0  # as the client library: no sum when values may be negative
        super().__init__(name, documentation, labelnames, registry=registry)

    def _new_child(self) -> FoldedSeries:
        return FoldedSeries(self._bounds)

    def _add_samples(self, metric: Metric, labels: dict[str, str], series: FoldedSeries) -> None:
        name = self._name
        cumulative = 0.0
        for le, count in zip(self._les, series.counts, strict=True):
            cumulative += count
            metric.add_sample(f"{name}_bucket", {**labels, "le": le}, cumulative)
        metric.add_sample(f"{name}_count", labels, cumulative)
        if self._with_sum:
            metric.add_sample(f"{name}_sum", labels, series.total)
