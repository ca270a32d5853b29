"""CPU per relayed token of the inter-token histogram: prometheus-client's ``Histogram.observe``
per gap (the path before) beside :class:`cortex_prometheus.folded_histogram.FoldedHistogram`
folding a stream's gaps at once (the path now), in one run, on the same gaps.

    .venv/bin/python bench/token_histogram.py                  # 64-token streams, 5 rounds
    .venv/bin/python bench/token_histogram.py --tokens 256 --streams 2000

Each round times both paths on the same streams (gaps drawn once, spread over the buckets as a
paced stream's are), alternating which goes first; the figure is the best round's time per
gap, which is what one relayed chunk adds to a stream's end-of-stream metrics.
"""

from __future__ import annotations

import argparse
import random
import time

from prometheus_client import CollectorRegistry, Histogram

from cortex_prometheus.buckets import INTER_TOKEN_SECONDS
from cortex_prometheus.folded_histogram import FoldedHistogram

NAME = "bench_inter_token_seconds"
LABELS = ("model", "node", "dialect")


def streams_of(count: int, tokens: int, seed: int = 7) -> list[tuple[float, ...]]:
    """Gaps around 10 ms (a paced stream) with a tail, so several buckets are used."""
    rng = random.Random(seed)
    return [tuple(rng.lognormvariate(-4.6, 0.6) for _ in range(tokens)) for _ in range(count)]


def time_histogram(streams: list[tuple[float, ...]]) -> float:
    registry = CollectorRegistry()
    family = Histogram(NAME, "gaps", LABELS, buckets=INTER_TOKEN_SECONDS, registry=registry)
    child = family.labels("m", "n1", "openai")
    started = time.perf_counter()
    for gaps in streams:
        for gap in gaps:
            child.observe(gap)
    return time.perf_counter() - started


def time_folded(streams: list[tuple[float, ...]]) -> float:
    registry = CollectorRegistry()
    family = FoldedHistogram(NAME, "gaps", LABELS, buckets=INTER_TOKEN_SECONDS, registry=registry)
    series = family.labels("m", "n1", "openai")
    started = time.perf_counter()
    for gaps in streams:
        series.observe_all(gaps)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=64, help="gaps per stream")
    parser.add_argument("--streams", type=int, default=1000, help="streams per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    streams = streams_of(args.streams, args.tokens)
    gaps = args.streams * args.tokens
    before: list[float] = []
    after: list[float] = []
    for n in range(args.rounds):
        if n % 2:
            after.append(time_folded(streams))
            before.append(time_histogram(streams))
        else:
            before.append(time_histogram(streams))
            after.append(time_folded(streams))
    old, new = min(before) / gaps * 1e6, min(after) / gaps * 1e6
    print(f"{args.streams} streams of {args.tokens} gaps, best of {args.rounds} rounds")
    print(f"{'path':44} {'µs per token':>12} {'µs per stream':>14}")
    print(f"{'Histogram.observe per gap (before)':44} {old:12.3f} {old * args.tokens:14.1f}")
    print(f"{'FoldedHistogram.observe_all per stream (now)':44} {new:12.3f} {new * args.tokens:14.1f}")
    print(f"{'saved':44} {old - new:12.3f} {(old - new) * args.tokens:14.1f}  ({old / new:.1f}x less)")


if __name__ == "__main__":
    main()
