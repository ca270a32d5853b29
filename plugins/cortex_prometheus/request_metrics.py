"""What one finished request adds: counts, latencies, token figures, waits, cold starts, failovers.

Everything is derived from one :class:`cortex_kernel.events.RequestFinished`, so the figures
agree with each other (a request counted is the request whose latency was observed) and no
handler has to know that metrics exist.

Latency and token histograms only see requests that succeeded (status below 400): a 404 answered
in a millisecond would otherwise pull every percentile down. Failures are counted by reason in
``cortex_request_errors_total``; ``cortex_request_duration_seconds`` keeps a ``status`` label so
the time failures take stays visible.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from cortex_kernel.events import RequestFinished
from cortex_prometheus import buckets
from cortex_prometheus.folded_counter import FoldedCount, FoldedCounter
from cortex_prometheus.folded_family import FoldedFamily
from cortex_prometheus.folded_histogram import FoldedHistogram, FoldedSeries
from cortex_prometheus.labels import (
    ENDPOINTS,
    GENERATION_ENDPOINTS,
    OVERFLOW,
    UNKNOWN,
    Guards,
    endpoint_label,
    status_class,
)

PER_REQUEST = ["model", "node", "dialect"]


class RequestMetrics:
    """The per-request families, registered in one gateway's registry.

    The families are :class:`FoldedCounter` and :class:`FoldedHistogram`: the same exposition as
    the client library's ``Counter`` and ``Histogram``, without a lock per increment (two and a
    linear bucket walk per observed value). The sink is fed on the event loop only, and one
    finished request touches up to fourteen series.
    """

    def __init__(self, registry: CollectorRegistry, guards: Guards) -> None:
        self.guards = guards
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._routes: dict[tuple[str, str | None, str, str, int], _Route] = {}
        self.requests = FoldedCounter(
            "cortex_requests",
            "Requests finished, by model, node, dialect, upstream endpoint and status class.",
            [*PER_REQUEST, "endpoint", "status"],
            registry=registry,
        )
        self.errors = FoldedCounter(
            "cortex_request_errors",
            "Requests that failed, by reason (an error code such as model_not_found or upstream_503).",
            [*PER_REQUEST, "endpoint", "reason"],
            registry=registry,
        )
        self.duration = FoldedHistogram(
            "cortex_request_duration_seconds",
            "Time from a request's arrival to its last byte, streams included.",
            [*PER_REQUEST, "endpoint", "status"],
            buckets=buckets.REQUEST_SECONDS,
            registry=registry,
        )
        self.ttft = FoldedHistogram(
            "cortex_time_to_first_token_seconds",
            "Time from arrival to the first byte of the reply's content (the whole body when not streamed).",
            [*PER_REQUEST, "stream"],
            buckets=buckets.TTFT_SECONDS,
            registry=registry,
        )
        # Fed every gap of a stream at once (one per relayed chunk).
        self.inter_token = FoldedHistogram(
            "cortex_inter_token_latency_seconds",
            "Gaps between consecutive chunks of a streamed reply, as the gateway relayed them.",
            PER_REQUEST,
            buckets=buckets.INTER_TOKEN_SECONDS,
            registry=registry,
        )
        self.tokens_per_second = FoldedHistogram(
            "cortex_output_tokens_per_second",
            "Completion tokens per second of generation, after the first token when streamed.",
            PER_REQUEST,
            buckets=buckets.TOKENS_PER_SECOND,
            registry=registry,
        )
        self.prompt_sizes = FoldedHistogram(
            "cortex_request_prompt_tokens",
            "Prompt tokens per request, from the reply's usage.",
            PER_REQUEST,
            buckets=buckets.TOKEN_COUNTS,
            registry=registry,
        )
        self.completion_sizes = FoldedHistogram(
            "cortex_request_completion_tokens",
            "Completion tokens per request, from the reply's usage.",
            PER_REQUEST,
            buckets=buckets.TOKEN_COUNTS,
            registry=registry,
        )
        self.prompt_tokens = FoldedCounter(
            "cortex_prompt_tokens", "Prompt tokens processed.", PER_REQUEST, registry=registry
        )
        self.completion_tokens = FoldedCounter(
            "cortex_completion_tokens", "Completion tokens generated.", PER_REQUEST, registry=registry
        )
        self.cached_tokens = FoldedCounter(
            "cortex_cached_prompt_tokens",
            "Prompt tokens served from a prefix cache (counted in cortex_prompt_tokens_total too).",
            PER_REQUEST,
            registry=registry,
        )
        self.wait = FoldedHistogram(
            "cortex_request_wait_seconds",
            "Time a request waited for a ready node, including any model load it waited for.",
            PER_REQUEST,
            buckets=buckets.WAIT_SECONDS,
            registry=registry,
        )
        self.cold_starts = FoldedCounter(
            "cortex_cold_starts",
            "Requests that had to wait for their model to be loaded.",
            PER_REQUEST,
            registry=registry,
        )
        self.failovers = FoldedCounter(
            "cortex_failovers",
            "Nodes that failed before answering and were replaced by another for the same request.",
            PER_REQUEST,
            registry=registry,
        )
        self.direct = FoldedCounter(
            "cortex_direct_requests",
            "Routed requests the gateway answered on its direct path, from the sockets' callbacks"
            " with no ASGI task; the rest went through the relay's lane.",
            PER_REQUEST,
            registry=registry,
        )

    def _per_model(self, labels: tuple[str, str, str]) -> _Series:
        """The children labelled by ``(model, node, dialect)`` alone, one lookup per request."""
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = _Series(labels)
        return series

    def _route(self, event: RequestFinished) -> _Route:
        """The labels and series of ``event``'s model, node, dialect, endpoint and status, from
        the guards; kept for the next request with the same five values when every label was
        admitted as it is (not ``unknown``, not folded into ``_other``).

        Those answers never change: a guard admits a value for good, and a model it learns later
        was ``unknown`` before, which is never kept. What is not kept goes through the guards
        each time, so a fold is counted each time and unknown names cannot grow the cache.
        """
        guards = self.guards
        labels = (guards.model(event.model), guards.node_or_none(event.node), guards.dialect(event.dialect))
        endpoint = endpoint_label(event.endpoint)
        status = status_class(event.status)
        route = _Route(
            labels,
            endpoint,
            self.requests.labels(*labels, endpoint, status),
            self.duration.labels(*labels, endpoint, status),
            self._per_model(labels),
        )
        if UNKNOWN not in labels and OVERFLOW not in labels and event.endpoint in ENDPOINTS:
            self._routes[event.model, event.node, event.dialect, event.endpoint, event.status // 100] = route
        return route

    def record(self, event: RequestFinished) -> None:
        # One lookup for what the guards and the families' label lookups would give (issue #17:
        # a relayed request's Python calls are its CPU, and these were a fifth of them).
        # Keyed by the status's hundreds, as its label is: the cache has no more entries than the
        # request counter has series.
        route = self._routes.get(
            (event.model, event.node, event.dialect, event.endpoint, event.status // 100)
        )
        if route is None:
            route = self._route(event)
        route.requests.inc()
        route.duration.observe(event.duration_s)
        failed = event.status >= 400 or event.error is not None
        if failed:
            reason = self.guards.reason(event.error or f"http_{event.status}")
            self.errors.labels(*route.labels, route.endpoint, reason).inc()
        series = route.series
        if event.node is not None or event.waited_s > 0:
            # Present at zero for every routed request, so a rate over them is 0, not "no data".
            series.child(self.wait).observe(event.waited_s)
            series.child(self.cold_starts).inc(1 if event.cold_start else 0)
            series.child(self.failovers).inc(event.failovers)
            series.child(self.direct).inc(1 if event.direct else 0)
        if failed:
            return
        self._tokens(series, event)
        if route.endpoint in GENERATION_ENDPOINTS:
            self._generation(series, event)

    def _tokens(self, series: _Series, event: RequestFinished) -> None:
        if event.prompt_tokens is not None:
            series.child(self.prompt_tokens).inc(event.prompt_tokens)
            series.child(self.prompt_sizes).observe(event.prompt_tokens)
            series.child(self.cached_tokens).inc(event.cached_tokens or 0)
        if event.completion_tokens is not None:
            series.child(self.completion_tokens).inc(event.completion_tokens)

    def _generation(self, series: _Series, event: RequestFinished) -> None:
        if event.first_token_s is not None:
            ttft = series.ttft.get(event.streamed)
            if ttft is None:
                streamed = "true" if event.streamed else "false"
                ttft = series.ttft[event.streamed] = self.ttft.labels(*series.labels, streamed)
            ttft.observe(event.first_token_s)
        if event.inter_token_s:
            series.child(self.inter_token).observe_all(event.inter_token_s)
        completion = event.completion_tokens
        if completion is None:
            return
        series.child(self.completion_sizes).observe(completion)
        rate = output_rate(event)
        if rate is not None:
            series.child(self.tokens_per_second).observe(rate)


class _Route:
    """What :meth:`RequestMetrics.record` needs of one request's labels, looked up once."""

    __slots__ = ("duration", "endpoint", "labels", "requests", "series")

    def __init__(
        self,
        labels: tuple[str, str, str],
        endpoint: str,
        requests: FoldedCount,
        duration: FoldedSeries,
        series: _Series,
    ) -> None:
        self.labels = labels
        self.endpoint = endpoint
        self.requests = requests
        self.duration = duration
        self.series = series


class _Series:
    """One ``(model, node, dialect)``'s children of the families labelled by those alone, each
    made when first used (as ``labels`` would make it), so no series appears before its first
    value. Keyed by the family object: one hash of an identity instead of a tuple per use."""

    __slots__ = ("children", "labels", "ttft")

    def __init__(self, labels: tuple[str, str, str]) -> None:
        self.labels = labels
        self.children: dict[FoldedFamily[Any], Any] = {}
        self.ttft: dict[bool, FoldedSeries] = {}  # by streamed: TTFT has a ``stream`` label too

    def child(self, family: FoldedFamily[Any]) -> Any:
        child = self.children.get(family)
        if child is None:
            child = self.children[family] = family.labels(*self.labels)
        return child


def output_rate(event: RequestFinished) -> float | None:
    """Completion tokens per second of generation.

    Streamed: the tokens after the first, over the time after the first chunk, so prefill (and
    any cold load) does not count as slow generation. Not streamed, or a stream that arrived in
    one piece: all tokens over the whole request, the only span there is.
    """
    tokens = event.completion_tokens or 0
    if tokens <= 0:
        return None
    first = event.first_token_s
    if event.streamed and first is not None and tokens > 1 and event.duration_s > first:
        return (tokens - 1) / (event.duration_s - first)
    return tokens / event.duration_s if event.duration_s > 0 else None
