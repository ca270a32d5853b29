"""The per-request counters without a lock per increment export what prometheus-client's Counter
exported: the same exposition, byte for byte, for the same increments."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, generate_latest

from cortex_prometheus.exposition import render
from cortex_prometheus.folded_counter import FoldedCounter
from cortex_prometheus.request_metrics import PER_REQUEST

NAME = "cortex_prompt_tokens"
HELP = "Prompt tokens processed."
LABELS = [("m", "n1", "openai"), ("m", "n2", "anthropic"), ("unknown", "none", "openai")]


def both(increments: list[tuple[tuple[str, str, str], float]]) -> tuple[CollectorRegistry, CollectorRegistry]:
    old_registry, new_registry = CollectorRegistry(), CollectorRegistry()
    old = Counter(NAME, HELP, PER_REQUEST, registry=old_registry)
    new = FoldedCounter(NAME, HELP, PER_REQUEST, registry=new_registry)
    for labels, amount in increments:
        old.labels(*labels).inc(amount)
        new.labels(*labels).inc(amount)
    return old_registry, new_registry


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(LABELS),
            st.one_of(st.integers(0, 10**6), st.floats(0, 1e6, allow_nan=False, allow_infinity=False)),
        ),
        max_size=30,
    )
)
def test_random_increments_export_what_the_counter_exported(
    increments: list[tuple[tuple[str, str, str], float]],
) -> None:
    old, new = both(increments)
    assert render(new) == render(old)


def test_created_samples_and_names_are_the_counters() -> None:
    old, new = both([(LABELS[0], 3), (LABELS[1], 0)])

    def shape(registry: CollectorRegistry) -> list[str]:
        return [line.split(" ")[0] for line in generate_latest(registry).decode().splitlines()]

    assert shape(new) == shape(old)
    assert f'{NAME}_total{{dialect="openai",model="m",node="n1"}} 3.0' in render(new).decode()


def test_it_is_registered_like_a_counter() -> None:
    registry = CollectorRegistry(auto_describe=True)
    FoldedCounter(NAME + "_total", HELP, PER_REQUEST, registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        Counter(NAME, HELP, PER_REQUEST, registry=registry)
    family = FoldedCounter("other", HELP, ["a"], registry=registry)
    with pytest.raises(ValueError, match="takes labels"):
        family.labels("x", "y")
