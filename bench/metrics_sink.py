"""CPU of the Prometheus sink per finished request: ``MetricsSink.handle`` on one non-streamed
and one 64-token streamed ``RequestFinished``, for the checkouts named, side by side in one run.

    .venv/bin/python bench/metrics_sink.py                          # this checkout
    .venv/bin/python bench/metrics_sink.py --variant "head=$H:$H/plugins" --variant "new=$PWD:$PWD/plugins"

A variant is ``NAME=PYTHONPATH``: each round runs every variant in its own process (in turn,
the order rotating by round), timing ``--events`` calls of each kind; the figure is the best
round's time per event, what one request adds to the gateway's CPU when it ends (the sink runs
on the event loop, ``docs/performance.md``, issue #17).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import msgspec


def measure(events: int) -> tuple[float, float]:
    """Seconds per event, (non-streamed, streamed), in this process."""
    from cortex_kernel.events import RequestFinished
    from cortex_prometheus.sink import MetricsSink

    sink = MetricsSink(["bench-model"], ["fake"])
    plain = RequestFinished(
        dialect="openai", endpoint="/v1/chat/completions", model="bench-model", node="fake",
        status=200, duration_s=0.003, first_token_s=0.003, waited_s=1e-6,
        prompt_tokens=8, completion_tokens=64,
    )  # fmt: skip
    gaps = tuple(0.01 for _ in range(63))
    stream = msgspec.structs.replace(plain, streamed=True, duration_s=0.65, first_token_s=0.01)
    stream = msgspec.structs.replace(stream, inter_token_s=gaps)
    figures = []
    for event in (plain, stream):
        sink.handle(event)  # the series exist before the clock starts
        started = time.perf_counter()
        for _ in range(events):
            sink.handle(event)
        figures.append((time.perf_counter() - started) / events)
    return figures[0], figures[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", action="append", default=[], help="NAME=PYTHONPATH (repeatable)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(*measure(args.events))
        return
    variants = [tuple(text.split("=", 1)) for text in args.variant] or [
        ("this", os.environ.get("PYTHONPATH", ""))
    ]
    best: dict[str, list[float]] = {name: [1.0, 1.0] for name, _ in variants}
    for n in range(args.rounds):
        for name, path in variants[n % len(variants) :] + variants[: n % len(variants)]:
            out = subprocess.run(
                [sys.executable, __file__, "--child", "--events", str(args.events)],
                env={**os.environ, "PYTHONPATH": path},
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            best[name] = [min(old, float(new)) for old, new in zip(best[name], out, strict=True)]
    print(f"best of {args.rounds} rounds of {args.events} events each")
    print(f"{'variant':12} {'µs per non-streamed request':>28} {'µs per 64-token stream':>24}")
    for name, (plain, stream) in best.items():
        print(f"{name:12} {plain * 1e6:28.2f} {stream * 1e6:24.2f}")


if __name__ == "__main__":
    main()
