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
import time
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, metrics
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class FoldedSeries:
    """One label set's counts: per-bucket (not cumulative) counts and the sum."""

    __slots__ = ("_bounds", "counts", "created", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * len(bounds)
        self.total = 0.0
        self.created = time.time()

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


class FoldedHistogram(Collector):
    """What ``Histogram(name, documentation, labelnames, buckets=..., registry=...)`` exports,
    for a single-threaded writer. A value lands in the first bucket whose bound is at least the
    value, as in the client library (``value <= le``); values are finite (gaps of a monotonic
    clock)."""

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
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], FoldedSeries] = {}
        registry.register(self)

    def labels(self, *values: str) -> FoldedSeries:
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self._name} takes labels {self._labelnames}, not {values!r}")
        series = self._series.get(values)
        if series is None:
            series = self._series[values] = FoldedSeries(self._bounds)
        return series

    def describe(self) -> Iterator[Metric]:
        """The family without samples: the registry learns its names (and refuses a duplicate)
        at registration, as it does for a ``Histogram``."""
        yield Metric(self._name, self._documentation, "histogram")

    def collect(self) -> Iterator[Metric]:
        metric = Metric(self._name, self._documentation, "histogram")
        name, names = self._name, self._labelnames
        with_sum = self._bounds[0] >= 0  # as the client library: no sum when values may be negative
        # The client library's switch for *_created (PROMETHEUS_DISABLE_CREATED_SERIES).
        with_created = getattr(metrics, "_use_created", True)
        for values, series in self._series.items():
            labels = dict(zip(names, values, strict=True))
            cumulative = 0.0
            for le, count in zip(self._les, series.counts, strict=True):
                cumulative += count
                metric.add_sample(f"{name}_bucket", {**labels, "le": le}, cumulative)
            metric.add_sample(f"{name}_count", labels, cumulative)
            if with_sum:
                metric.add_sample(f"{name}_sum", labels, series.total)
            if with_created:
                metric.add_sample(f"{name}_created", labels, series.created)
        yield metric
