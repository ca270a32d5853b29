"""What the folded families share: a labelled family of plain-number series for one writer thread.

:class:`~cortex_prometheus.folded_counter.FoldedCounter` and
:class:`~cortex_prometheus.folded_histogram.FoldedHistogram` stand in for the client library's
``Counter`` and ``Histogram`` on the event loop, where a lock per update buys nothing. They differ
only in what one series holds and the samples it renders; the label check, the series made on
first use, the registration (names refused as the client library refuses them) and the trailing
``_created`` sample are the same, so they live here once.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from typing import ClassVar, Generic, TypeVar

from prometheus_client import CollectorRegistry, metrics
from prometheus_client.core import Metric
from prometheus_client.registry import Collector


class FoldedChild:
    """One label set's series: its subclasses add the numbers; each knows when it was made."""

    __slots__ = ("created",)

    def __init__(self) -> None:
        self.created = time.time()


C = TypeVar("C", bound=FoldedChild)


class FoldedFamily(Collector, Generic[C]):
    """A family named ``name`` with ``labelnames``, registered in ``registry`` on creation.

    Subclasses say their ``kind`` (the exposition's TYPE), make a series (:meth:`_new_child`) and
    add its samples but ``_created`` (:meth:`_add_samples`), in the client library's order.
    """

    kind: ClassVar[str]

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], *, registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], C] = {}
        registry.register(self)

    @abstractmethod
    def _new_child(self) -> C:
        """A fresh series, for a label set's first use."""

    @abstractmethod
    def _add_samples(self, metric: Metric, labels: dict[str, str], series: C) -> None:
        """``series``' samples, ``_created`` excepted, added to ``metric``."""

    def labels(self, *values: str) -> C:
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self._name} takes labels {self._labelnames}, not {values!r}")
        series = self._series.get(values)
        if series is None:
            series = self._series[values] = self._new_child()
        return series

    def describe(self) -> Iterator[Metric]:
        """The family without samples, so the registry learns its names (and refuses a duplicate,
        ``_total``, ``_created`` and the like included) at registration, as for the client's own."""
        yield Metric(self._name, self._documentation, self.kind)

    def collect(self) -> Iterator[Metric]:
        metric = Metric(self._name, self._documentation, self.kind)
        names = self._labelnames
        created = f"{self._name}_created"
        # The client library's switch for *_created (PROMETHEUS_DISABLE_CREATED_SERIES).
        with_created = getattr(metrics, "_use_created", True)
        for values, series in self._series.items():
            labels = dict(zip(names, values, strict=True))
            self._add_samples(metric, labels, series)
            if with_created:
                metric.add_sample(created, labels, series.created)
        yield metric
