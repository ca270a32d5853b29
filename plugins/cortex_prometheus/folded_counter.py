"""A labelled counter for a single-threaded writer: a plain float per series, no lock per ``inc``.

``prometheus_client.Counter.inc`` checks the child, checks the amount and takes a lock for every
increment, which is built for threads sharing a metric. The gateway's per-request counters are
fed from the event loop only (the metrics sink, once per finished request, six increments), as
the :class:`~cortex_prometheus.folded_histogram.FoldedHistogram` families are, so this keeps
each series as a number and renders exactly the samples a ``Counter`` with the same name and
labels renders: ``_total`` and ``_created``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, metrics
from prometheus_client.core import Metric
from prometheus_client.registry import Collector


class FoldedCount:
    """One label set's total."""

    __slots__ = ("created", "total")

    def __init__(self) -> None:
        self.total = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        """Add ``amount``: never negative here (token counts, requests), as the client library
        insists, so no check per call."""
        self.total += amount


class FoldedCounter(Collector):
    """What ``Counter(name, documentation, labelnames, registry=...)`` exports, for a writer on
    one thread. ``name`` is given without ``_total``, as the client library takes it."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], *, registry: CollectorRegistry
    ) -> None:
        self._name = name.removesuffix("_total")
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], FoldedCount] = {}
        registry.register(self)

    def labels(self, *values: str) -> FoldedCount:
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self._name} takes labels {self._labelnames}, not {values!r}")
        series = self._series.get(values)
        if series is None:
            series = self._series[values] = FoldedCount()
        return series

    def describe(self) -> Iterator[Metric]:
        """The family without samples, so the registry refuses a duplicate name at registration
        (``_total`` and ``_created`` included) as it does for a ``Counter``."""
        yield Metric(self._name, self._documentation, "counter")

    def collect(self) -> Iterator[Metric]:
        metric = Metric(self._name, self._documentation, "counter")
        name, names = self._name, self._labelnames
        with_created = getattr(metrics, "_use_created", True)  # PROMETHEUS_DISABLE_CREATED_SERIES
        for values, series in self._series.items():
            labels = dict(zip(names, values, strict=True))
            metric.add_sample(f"{name}_total", labels, series.total)
            if with_created:
                metric.add_sample(f"{name}_created", labels, series.created)
        yield metric
