"""The ``/metrics`` route on the gateway's metrics listener.

The text format is served without prometheus-client's ``*_created`` samples: in the classic text
format they are separate gauges, one per counter or histogram series, which doubles the series
count for a timestamp Prometheus does not use.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CREATED_BY = frozenset({"counter", "histogram", "summary", "gaugehistogram"})


class WithoutCreated(Collector):
    """``source``'s metrics minus the ``<name>_created`` samples of counters and histograms."""

    def __init__(self, source: Collector) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        for metric in self._source.collect():
            if metric.type not in CREATED_BY:
                yield metric
                continue
            created = f"{metric.name}_created"
            kept = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            kept.samples = [sample for sample in metric.samples if sample.name != created]
            yield kept


def render(source: Collector) -> bytes:
    """The exposition of ``source`` in the Prometheus text format."""
    return generate_latest(WithoutCreated(source))


def metrics_route(source: Collector) -> Route:
    async def metrics(request: Request) -> Response:
        return Response(render(source), media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", metrics, methods=["GET"])
