"""Python calls the gateway makes per relayed stream and per token: a count, not a time.

On this VM the CPU a paced stream costs moves by 10 % and more between identical runs, and by
30 % between days (docs/performance.md, issue #17), so a change that takes a few calls off the
hot path cannot be seen in CPU time. What it changes can be counted exactly: the gateway runs
with a profile hook (``sys.setprofile``, installed by a ``sitecustomize`` this script writes
into a temporary folder) that counts, on the event loop's thread, every Python frame entered
(a coroutine resumed counts as one, as it is one) and every call of a C function.

For each variant, paced streams (10 ms between tokens, as the overhead benchmark's ``paced``
scenario) run twice, at 8 and at 64 tokens; the difference between the two runs separates a
stream's fixed calls from its calls per token. A third run counts non-streamed requests (the
``plain`` scenario's). Counts from the runs in between (warm-up,
health checks, the poller) are left out by resetting the counters just before each run.
The poller still runs during a run, so a run's length adds a little to the per-token figure
(a poll of one neuron every ``poll_interval_s``: about 0.1 call per token here).

    .venv/bin/python bench/gateway_calls.py
    # a checkout before the change beside the working tree, with the functions behind each figure:
    .venv/bin/python bench/gateway_calls.py --variant 'head;PYTHONPATH=<head>:<head>/plugins' \\
        --variant new --top 15

Cython and C-extension methods (uvloop's transports, httptools' parser) are invisible to the
hook: what is counted is the Python the gateway runs and the builtins it calls.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gateway_overhead import HERE, Variant, free_port, run_round, start, wait_ready, wait_up

# The counting hook: imported by the gateway's interpreter at start-up (``sitecustomize``), armed
# only where CORTEX_BENCH_CALLS names the file it writes; SIGUSR1 resets, SIGUSR2 writes.
HOOK = """
import collections, json, os, signal, sys

_out = os.environ.get("CORTEX_BENCH_CALLS")
if _out:
    _counts = collections.Counter()

    def _count(frame, event, arg):
        if event == "call":
            code = frame.f_code
            _counts["py", f"{code.co_filename}:{code.co_firstlineno}", code.co_qualname] += 1
        elif event == "c_call":
            _counts["c", "", getattr(arg, "__qualname__", repr(arg))] += 1

    def _write(*_):
        sys.setprofile(None)  # not counting itself
        with open(_out + ".part", "w") as f:
            json.dump([[*key, n] for key, n in _counts.items()], f)
        os.replace(_out + ".part", _out)  # whole, or not there yet
        sys.setprofile(_count)

    signal.signal(signal.SIGUSR1, lambda *_: _counts.clear())
    signal.signal(signal.SIGUSR2, _write)
    sys.setprofile(_count)
"""

Key = tuple[str, str, str]  # (kind: "py" or "c", where, name)
WORKERS = 8
STREAMS_PER_WORKER = 10


@dataclass
class Counts:
    """Calls over one run of paced streams."""

    calls: collections.Counter[Key]
    streams: int
    tokens: int


async def count_run(
    variant: Variant, tokens: int, workdir: Path, hook: Path, scenario: str = "paced"
) -> Counts:
    upstream_port = free_port()
    upstream = start(
        [
            *(sys.executable, str(HERE / "fake_neuron.py"), "--port", str(upstream_port)),
            *("--gap-ms", "10", "--tokens", str(tokens)),
        ],
        1,
        workdir / f"upstream-{variant.name}-{tokens}.log",
    )
    port = free_port()
    config = workdir / f"cortex-{variant.name}-{tokens}.toml"
    config.write_text(variant.config(port, upstream_port))
    out = workdir / f"calls-{variant.name}-{tokens}.json"
    path = ":".join(p for p in (str(hook), variant.env.get("PYTHONPATH", "")) if p)
    env = {**variant.env, "PYTHONPATH": path, "CORTEX_BENCH_CALLS": str(out)}
    gateway = start(
        [variant.exe, "--log-level", "warning", "serve", "--config", str(config)],
        variant.cpus,
        workdir / f"gw-{variant.name}-{tokens}.log",
        env,
    )
    try:
        await wait_up(f"http://127.0.0.1:{upstream_port}/health")
        via = f"http://127.0.0.1:{port}"
        await wait_up(f"{via}/health")
        await wait_ready(via)
        await run_round(via, scenario, 4, 2)  # warm connections and code paths
        gateway.send_signal(signal.SIGUSR1)
        await asyncio.sleep(0.5)
        result = await run_round(via, scenario, WORKERS, STREAMS_PER_WORKER)
        gateway.send_signal(signal.SIGUSR2)
        for _ in range(100):
            await asyncio.sleep(0.1)
            if out.exists():
                break
        rows = json.loads(out.read_text())
        calls: collections.Counter[Key] = collections.Counter({(k, w, n): c for k, w, n, c in rows})
        return Counts(calls, len(result.ttft) or result.requests, result.tokens)
    finally:
        for process in (gateway, upstream):
            process.terminate()
            process.wait()


def split(short: Counts, long: Counts) -> dict[Key, tuple[float, float]]:
    """Each function's (calls per stream, fixed; calls per token) from two run lengths."""
    figures: dict[Key, tuple[float, float]] = {}
    tokens_s, tokens_l = short.tokens / short.streams, long.tokens / long.streams
    for key in short.calls.keys() | long.calls.keys():
        per_stream_s = short.calls[key] / short.streams
        per_stream_l = long.calls[key] / long.streams
        per_token = (per_stream_l - per_stream_s) / (tokens_l - tokens_s)
        figures[key] = (per_stream_s - per_token * tokens_s, per_token)
    return figures


def report(name: str, figures: dict[Key, tuple[float, float]], top: int) -> None:
    def total(kind: str, index: int) -> float:
        return sum(v[index] for k, v in figures.items() if k[0] == kind)

    print(
        f"[{name}] per stream (fixed): {total('py', 0):6.1f} Python frames, {total('c', 0):6.1f} C calls;"
        f" per token: {total('py', 1):5.2f} Python frames, {total('c', 1):5.2f} C calls"
    )
    for index, label in ((1, "per token"), (0, "per stream")):
        ranked = sorted(figures.items(), key=lambda item: -item[1][index])[:top]
        for (_, where, fn), values in ranked:
            if values[index] >= 0.05:
                shown = Path(where.rpartition(":")[0]).name + ":" + where.rpartition(":")[2] if where else "C"
                print(f"[{name}]   {label:>10} {values[index]:6.2f}  {fn}  ({shown})")


async def main_async(variants: list[Variant], top: int) -> None:
    with tempfile.TemporaryDirectory(prefix="cortex-calls-") as tmp:
        workdir = Path(tmp)
        hook = workdir / "hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(HOOK)
        for variant in variants:
            short = await count_run(variant, 8, workdir, hook)
            long = await count_run(variant, 64, workdir, hook)
            report(variant.name, split(short, long), top)
            plain = await count_run(variant, 8, workdir, hook, "plain")
            frames = sum(n for (kind, _, _), n in plain.calls.items() if kind == "py") / plain.streams
            c_calls = sum(n for (kind, _, _), n in plain.calls.items() if kind == "c") / plain.streams
            shown = f"{frames:6.1f} Python frames, {c_calls:6.1f} C calls"
            print(f"[{variant.name}] per non-streamed request: {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--variant", action="append", default=[], help="NAME;KEY=VALUE;... as in gateway_overhead.py"
    )
    parser.add_argument("--top", type=int, default=0, help="also list the N functions called most")
    args = parser.parse_args()
    variants = [Variant.parse(v) for v in args.variant] or [Variant("gateway")]
    asyncio.run(main_async(variants, args.top))


if __name__ == "__main__":
    main()
