"""What the gateway adds: TTFT (p50/p99) and throughput relative to calling the upstream directly.

Side by side in one run, interleaved (direct, gateway, direct, gateway, ...) so machine noise
hits both equally. The gateway is pinned to CPU 0; the fake neuron and the load generator to
CPU 1 (on a machine with at least two cores).

    .venv/bin/python bench/gateway_overhead.py            # all scenarios
    .venv/bin/python bench/gateway_overhead.py --rounds 5 --scenario paced

Scenarios (closed loop: each worker sends its next request when the last one ends):
paced (64 workers streaming 64 tokens 10 ms apart, starts staggered over one stream's length,
3 streams each), unpaced (32 workers streaming 64 tokens as fast as the upstream sends, 10
each), plain (32 workers sending non-streaming requests, 50 each).

``--console-streams N`` adds a third arm to each round: the gateway again, with N operator
console event streams open (docs/console.md), read by a separate process pinned with the load
generator, so what the consoles cost shows as the gateway's CPU and TTFT, not the client's.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
EXE = str(Path(sys.executable).with_name("cortex-kernel"))
BODY_STREAM = b'{"model":"bench-model","stream":true,"messages":[{"role":"user","content":"hi"}]}'
BODY_PLAIN = b'{"model":"bench-model","messages":[{"role":"user","content":"hi"}]}'


@dataclass
class Result:
    ttft: list[float] = field(default_factory=list)
    tokens: int = 0
    requests: int = 0
    seconds: float = 0.0
    gateway_cpu_s: float = 0.0

    def rate(self) -> float:
        return (self.tokens or self.requests) / self.seconds


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_up(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(url) as reply:
                    if reply.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def one_stream(session: aiohttp.ClientSession, url: str, result: Result) -> None:
    started = time.perf_counter()
    first = None
    async with session.post(url, data=BODY_STREAM, headers={"content-type": "application/json"}) as reply:
        assert reply.status == 200, reply.status
        async for line in reply.content:
            if line.startswith(b"data: {"):
                if first is None:
                    first = time.perf_counter() - started
                result.tokens += 1
    assert first is not None
    result.ttft.append(first)


async def one_plain(session: aiohttp.ClientSession, url: str, result: Result, count: int) -> None:
    for _ in range(count):
        async with session.post(url, data=BODY_PLAIN, headers={"content-type": "application/json"}) as reply:
            await reply.read()
            assert reply.status == 200
            result.requests += 1


async def stream_worker(
    session: aiohttp.ClientSession, url: str, result: Result, delay: float, count: int
) -> None:
    await asyncio.sleep(delay)  # staggered starts: steady load, not one thundering burst
    for _ in range(count):
        await one_stream(session, url, result)


async def run_round(base: str, scenario: str, concurrency: int, per_worker: int) -> Result:
    """Closed loop: ``concurrency`` workers, each with its own keep-alive connection."""
    result = Result()
    url = f"{base}/v1/chat/completions"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        if scenario == "plain":
            await asyncio.gather(*(one_plain(session, url, result, per_worker) for _ in range(concurrency)))
        else:
            spread = 0.64 if scenario == "paced" else 0.0
            await asyncio.gather(
                *(
                    stream_worker(session, url, result, spread * i / concurrency, per_worker)
                    for i in range(concurrency)
                )
            )
        result.seconds = time.perf_counter() - started
    return result


async def read_consoles(url: str, count: int, ready: Any, stop: Any) -> None:
    """Hold ``count`` console event streams open and read them until ``stop`` is set."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one() -> None:
            async with session.get(f"{url}/console/api/stream", timeout=aiohttp.ClientTimeout()) as reply:
                assert reply.status == 200, reply.status
                async for _ in reply.content.iter_any():
                    pass

        tasks = [asyncio.ensure_future(one()) for _ in range(count)]
        while True:
            async with session.get(f"{url}/console/api/state") as reply:
                if (await reply.json())["clients"] >= count:
                    break
            await asyncio.sleep(0.05)
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)  # a process-shared event
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def console_process(url: str, count: int, ready: Any, stop: Any) -> None:
    asyncio.run(read_consoles(url, count, ready, stop))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start(args: list[str], cpu: int | None, log: Path) -> subprocess.Popen[bytes]:
    prefix = ["taskset", "-c", str(cpu)] if cpu is not None and os.cpu_count() and os.cpu_count() > 1 else []
    return subprocess.Popen([*prefix, *args], stdout=log.open("wb"), stderr=subprocess.STDOUT)


async def scenario_run(name: str, rounds: int, workdir: Path, consoles: int = 0) -> None:
    gap = {"paced": 10.0, "unpaced": 0.0, "plain": 0.0}[name]
    concurrency = {"paced": 64, "unpaced": 32, "plain": 32}[name]
    upstream_port, gateway_port = free_port(), free_port()
    upstream = start(
        [sys.executable, str(HERE / "fake_neuron.py"), "--port", str(upstream_port), "--gap-ms", str(gap)],
        1,
        workdir / f"upstream-{name}.log",
    )
    config = workdir / f"cortex-{name}.toml"
    config.write_text(
        f'[gateway]\nlisten = "127.0.0.1:{gateway_port}"\nmetrics_listen = "127.0.0.1:{free_port()}"\n\n'
        f'[[neurons]]\nname = "fake"\nendpoint = "http://127.0.0.1:{upstream_port}"\n'
    )
    gateway = start(
        [EXE, "--log-level", "warning", "serve", "--config", str(config)], 0, workdir / f"gw-{name}.log"
    )
    try:
        direct, via = f"http://127.0.0.1:{upstream_port}", f"http://127.0.0.1:{gateway_port}"
        await wait_up(f"{direct}/health")
        await wait_up(f"{via}/health")
        await run_round(via, name, 4, 4)  # warm connections and code paths
        await run_round(direct, name, 4, 4)
        results: dict[str, list[Result]] = {"direct": [], "gateway": []}
        with_consoles = f"gateway+{consoles} consoles"
        if consoles:
            results[with_consoles] = []
        per_worker = {"paced": 3, "unpaced": 10, "plain": 50}[name]
        for _ in range(rounds):
            results["direct"].append(await run_round(direct, name, concurrency, per_worker))
            before = cpu_seconds(gateway.pid)
            results["gateway"].append(await run_round(via, name, concurrency, per_worker))
            results["gateway"][-1].gateway_cpu_s = cpu_seconds(gateway.pid) - before
            if consoles:
                ready, stop = multiprocessing.Event(), multiprocessing.Event()
                reader = multiprocessing.Process(target=console_process, args=(via, consoles, ready, stop))
                reader.start()
                await asyncio.get_running_loop().run_in_executor(None, ready.wait, 60)
                before = cpu_seconds(gateway.pid)
                results[with_consoles].append(await run_round(via, name, concurrency, per_worker))
                results[with_consoles][-1].gateway_cpu_s = cpu_seconds(gateway.pid) - before
                stop.set()
                reader.join(30)
        report(name, results)
    finally:
        gateway.terminate()
        upstream.terminate()
        gateway.wait(30)
        upstream.wait(30)


def report(name: str, results: dict[str, list[Result]]) -> None:
    rate = {k: statistics.median(r.rate() for r in v) for k, v in results.items()}
    unit = "req/s" if name == "plain" else "tokens/s"
    print(f"\n== {name} ==")
    for arm in [k for k in results if k != "direct"]:
        if arm != "gateway":
            print(f"-- {arm}")
        print(
            f"throughput  direct {rate['direct']:10.1f} {unit}   gateway {rate[arm]:10.1f} {unit}"
            f"   ratio {rate[arm] / rate['direct']:.3f}"
        )
        via = results[arm]
        busy = sum(r.gateway_cpu_s for r in via) / sum(r.seconds for r in via)
        per_unit = sum(r.gateway_cpu_s for r in via) / sum(r.tokens or r.requests for r in via) * 1e6
        what = "request" if name == "plain" else "token"
        print(f"gateway CPU {busy * 100:5.1f}% of its core, {per_unit:.1f} us per relayed {what}")
        if name != "plain":
            ttft = {k: [t for r in v for t in r.ttft] for k, v in results.items()}
            for q, label in ((0.5, "p50"), (0.99, "p99")):
                d, g = pct(ttft["direct"], q) * 1000, pct(ttft[arm], q) * 1000
                print(f"TTFT {label}    direct {d:8.2f} ms   gateway {g:8.2f} ms   added {g - d:+8.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scenario", choices=["paced", "unpaced", "plain", "all"], default="all")
    parser.add_argument("--console-streams", type=int, default=0, help="also run with N console streams open")
    args = parser.parse_args()
    if os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {1})
    names = ["paced", "unpaced", "plain"] if args.scenario == "all" else [args.scenario]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            asyncio.run(scenario_run(name, args.rounds, Path(tmp), args.console_streams))


if __name__ == "__main__":
    main()
