"""The inter-token histogram without a lock per gap exports what prometheus-client's Histogram
exported: the same exposition, byte for byte, for the same observations."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from cortex_prometheus import buckets
from cortex_prometheus.exposition import render
from cortex_prometheus.folded_histogram import FoldedHistogram
from cortex_prometheus.request_metrics import PER_REQUEST
from cortex_prometheus.sink import MetricsSink
from tests.prometheus.events import finished

NAME = "cortex_inter_token_latency_seconds"
HELP = "Gaps between consecutive chunks of a streamed reply, as the gateway relayed them."
LABELS = [("m", "n1", "openai"), ("m", "n2", "anthropic")]

# Every bound exactly, just either side of some, zero, and past the last bound (the +Inf bucket).
KNOWN = (
    *buckets.INTER_TOKEN_SECONDS,
    0.0,
    0.0009999,
    0.0010001,
    0.05000001,
    0.049999,
    0.0123,
    0.31,
    79.99,
    80.00001,
    100.0,
    1e9,
)

Stream = tuple[tuple[str, str, str], tuple[float, ...]]


def both(streams: list[Stream]) -> tuple[CollectorRegistry, CollectorRegistry]:
    """The old path (``Histogram.observe`` per gap) and the new (each stream folded at once)."""
    old_registry, new_registry = CollectorRegistry(), CollectorRegistry()
    old = Histogram(NAME, HELP, PER_REQUEST, buckets=buckets.INTER_TOKEN_SECONDS, registry=old_registry)
    new = FoldedHistogram(NAME, HELP, PER_REQUEST, buckets=buckets.INTER_TOKEN_SECONDS, registry=new_registry)
    for labels, gaps in streams:
        child = old.labels(*labels)
        for gap in gaps:
            child.observe(gap)
        new.labels(*labels).observe_all(gaps)
    return old_registry, new_registry


def test_a_known_sequence_exports_what_the_histogram_exported() -> None:
    streams = [(LABELS[0], KNOWN), (LABELS[1], KNOWN[::-1]), (LABELS[0], (0.01, 0.02)), (LABELS[1], ())]
    old, new = both(streams)
    assert render(new) == render(old)
    text = render(new).decode()
    # At most 0.05: six bounds, 0, 0.0009999, 0.0010001, 0.049999, 0.0123, then 0.01 and 0.02.
    assert f'{NAME}_bucket{{dialect="openai",le="0.05",model="m",node="n1"}} 13.0' in text
    assert f'{NAME}_bucket{{dialect="openai",le="+Inf",model="m",node="n1"}} {len(KNOWN) + 2}.0' in text
    assert f'{NAME}_count{{dialect="anthropic",model="m",node="n2"}} {len(KNOWN)}.0' in text


def test_created_samples_are_there_as_the_histogram_has_them() -> None:
    old, new = both([(LABELS[0], (0.1,))])

    def shape(registry: CollectorRegistry) -> list[str]:
        return [line.split(" ")[0] for line in generate_latest(registry).decode().splitlines()]

    assert shape(new) == shape(old)
    assert f"{NAME}_created" in generate_latest(new).decode()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(LABELS),
            st.lists(st.floats(min_value=0, max_value=200, allow_nan=False), max_size=80).map(tuple),
        ),
        max_size=6,
    )
)
def test_random_streams_export_what_the_histogram_exported(streams: list[Stream]) -> None:
    old, new = both(streams)
    assert render(new) == render(old)


def test_the_sink_folds_a_streams_gaps_into_the_family() -> None:
    sink = MetricsSink(catalogue=["m"], nodes=["n1"])
    gaps = (0.001, 0.02, 0.02, 5.0)
    event = finished(duration_s=6.0, streamed=True, first_token_s=0.5, inter_token_s=gaps)
    sink.handle(event)
    sink.handle(event)
    old, _ = both([(("m", "n1", "openai"), gaps), (("m", "n1", "openai"), gaps)])
    lines = [line for line in render(sink.registry).decode().splitlines() if NAME in line]
    assert lines == [line for line in render(old).decode().splitlines() if NAME in line]


def test_it_is_registered_like_a_histogram() -> None:
    registry = CollectorRegistry()
    FoldedHistogram(NAME, HELP, PER_REQUEST, buckets=(0.1, 1.0), registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        Histogram(NAME, HELP, PER_REQUEST, buckets=(0.1, 1.0), registry=registry)
    with pytest.raises(ValueError, match="increasing"):
        FoldedHistogram("other", HELP, [], buckets=(1.0, 0.1), registry=registry)


def test_labels_are_checked_and_infinity_is_the_last_bucket() -> None:
    registry = CollectorRegistry()
    family = FoldedHistogram("h", "help", ["a"], buckets=(1.0, math.inf), registry=registry)
    with pytest.raises(ValueError, match="takes labels"):
        family.labels("x", "y")
    family.labels("x").observe(5.0)
    assert 'h_bucket{a="x",le="+Inf"} 1.0' in render(registry).decode()
