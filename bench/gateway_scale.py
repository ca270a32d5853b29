"""Figures an operator sizes a gateway by, each printed by one scenario:

- ``streams``: the gateway's resident memory (RSS) while it holds N concurrent open streams
  (default 1,000; target at most 150 MB), beside its RSS idle;
- ``startup``: seconds from starting the gateway process to its first routed request answered
  (the fake neuron already up), the median of a few starts;
- ``polling``: the gateway's CPU while it polls N fake neurons (default 100) at the default
  interval, as a share of a core and per poll.

(``fakes`` is the helper the others start: ``bench/fake_neuron.py``'s app on many ports.)

    .venv/bin/python bench/gateway_scale.py streams [--streams 1000]
    .venv/bin/python bench/gateway_scale.py startup [--starts 5]
    .venv/bin/python bench/gateway_scale.py polling [--neurons 100] [--seconds 30]

``--variant`` takes the same ``NAME;KEY=VALUE;...`` as ``bench/gateway_overhead.py`` (environment
for the gateway, ``[gateway]`` keys); several are measured one after the other. The fake neurons
(``bench/fake_neuron.py``'s app, one process serving many ports) and the clients run on CPU 1, the
gateway on CPU 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from gateway_overhead import (
    BODY_PLAIN,
    BODY_STREAM,
    EXE,
    Variant,
    free_port,
    start,
    tree_cpu_seconds,
    wait_up,
)

MAX_STREAMS_PER_NEURON = 500  # below the relay's 512 busy connections per neuron


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its running children, in MB (10^6 bytes)."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total = int(line.split()[1]) * 1024
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return total / 1e6 + sum(rss_mb(int(child)) for child in children)


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports that are free now, below the ephemeral range."""
    import random
    import socket

    for _ in range(50):
        first = random.randrange(20000, 30000 - count)
        try:
            for port in range(first, first + count):
                with socket.socket() as sock:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {count} consecutive free ports")


def gateway_config(path: Path, port: int, neuron_ports: range, variant: Variant) -> Path:
    neurons = "".join(
        f'\n[[neurons]]\nname = "fake{i}"\nendpoint = "http://127.0.0.1:{p}"\n'
        for i, p in enumerate(neuron_ports)
    )
    path.write_text(
        f'[gateway]\nlisten = "127.0.0.1:{port}"\nmetrics_listen = "127.0.0.1:{free_port()}"\n'
        + "".join(f"{line}\n" for line in variant.gateway)
        + "\n[limits]\nmax_connections = 8192\n"
        + neurons
    )
    return path


def fakes(
    first: int, count: int, workdir: Path, gap_ms: float = 0.0, tokens: int = 64
) -> subprocess.Popen[bytes]:
    """``count`` fake neurons (``bench/fake_neuron.py``'s app) on consecutive ports, one process."""
    args = [sys.executable, __file__, "fakes", "--first-port", str(first), "--neurons", str(count)]
    return start([*args, "--gap-ms", str(gap_ms), "--tokens", str(tokens)], 1, workdir / "fakes.log")


async def serve_fakes(first: int, count: int, gap_ms: float, tokens: int) -> None:
    from aiohttp import web
    from fake_neuron import build_app

    runner = web.AppRunner(build_app(tokens, gap_ms / 1000))
    await runner.setup()
    for port in range(first, first + count):
        await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def first_routed(url: str, deadline_s: float = 60.0) -> float:
    """Post until one non-streamed request is answered 200; the time that took."""
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() - started < deadline_s:
            try:
                async with session.post(
                    f"{url}/v1/chat/completions",
                    data=BODY_PLAIN,
                    headers={"content-type": "application/json"},
                ) as reply:
                    await reply.read()
                    if reply.status == 200:
                        return time.perf_counter() - started
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.005)
    raise RuntimeError(f"{url} routed nothing within {deadline_s} s")


async def scenario_streams(variant: Variant, workdir: Path, count: int) -> None:
    neurons = max(1, -(-count // MAX_STREAMS_PER_NEURON))
    first = free_ports(neurons)
    # Long, slow streams: one token a second, so every stream stays open while RSS is read.
    upstream = fakes(first, neurons, workdir, gap_ms=1000, tokens=120)
    port = free_port()
    config = gateway_config(workdir / "streams.toml", port, range(first, first + neurons), variant)
    gateway = start(
        [EXE, "--log-level", "warning", "serve", "--config", str(config)], 0, workdir / "gw.log", variant.env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for p in range(first, first + neurons):
            await wait_up(f"http://127.0.0.1:{p}/health")
        await wait_up(f"{url}/health")
        await first_routed(url)
        idle = rss_mb(gateway.pid)
        opened = 0
        all_open = asyncio.Event()

        async def one(session: aiohttp.ClientSession) -> None:
            nonlocal opened
            async with session.post(
                f"{url}/v1/chat/completions", data=BODY_STREAM, headers={"content-type": "application/json"}
            ) as reply:
                assert reply.status == 200, reply.status
                await reply.content.readline()  # the first event: the stream is open end to end
                opened += 1
                if opened == count:
                    all_open.set()
                await all_open.wait()
                await asyncio.sleep(3600)  # held open until cancelled

        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            tasks = [asyncio.create_task(one(session)) for _ in range(count)]
            try:
                await asyncio.wait_for(all_open.wait(), 120)
                await asyncio.sleep(2)
                samples = []
                for _ in range(5):
                    samples.append(rss_mb(gateway.pid))
                    await asyncio.sleep(0.5)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        held = max(samples)
        print(
            f"[{variant.name}] streams: {count} open streams, gateway RSS {held:.1f} MB "
            f"(idle {idle:.1f} MB, {(held - idle) * 1000 / count:.1f} kB per stream)"
        )
    finally:
        gateway.terminate()
        upstream.terminate()
        gateway.wait(30)
        upstream.wait(30)


async def scenario_startup(variant: Variant, workdir: Path, starts: int) -> None:
    first = free_ports(1)
    upstream = fakes(first, 1, workdir)
    try:
        await wait_up(f"http://127.0.0.1:{first}/health")
        times = []
        for i in range(starts):
            port = free_port()
            config = gateway_config(workdir / f"startup{i}.toml", port, range(first, first + 1), variant)
            began = time.perf_counter()
            gateway = start(
                [EXE, "--log-level", "warning", "serve", "--config", str(config)],
                0,
                workdir / f"gw{i}.log",
                variant.env,
            )
            try:
                await first_routed(f"http://127.0.0.1:{port}")
                times.append(time.perf_counter() - began)
            finally:
                gateway.terminate()
                gateway.wait(30)
        shown = ", ".join(f"{t:.2f}" for t in times)
        print(
            f"[{variant.name}] startup: process start to first routed request, median "
            f"{statistics.median(times):.2f} s ({shown})"
        )
    finally:
        upstream.terminate()
        upstream.wait(30)


async def scenario_polling(variant: Variant, workdir: Path, count: int, seconds: float) -> None:
    first = free_ports(count)
    upstream = fakes(first, count, workdir)
    port = free_port()
    config = gateway_config(workdir / "polling.toml", port, range(first, first + count), variant)
    gateway = None
    try:
        for p in (first, first + count - 1):
            await wait_up(f"http://127.0.0.1:{p}/health")
        gateway = start(
            [EXE, "--log-level", "warning", "serve", "--config", str(config)],
            0,
            workdir / "gw.log",
            variant.env,
        )
        await wait_up(f"http://127.0.0.1:{port}/health")
        await asyncio.sleep(5)  # past start-up and the first polls
        before, began = tree_cpu_seconds(gateway.pid), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu, wall = tree_cpu_seconds(gateway.pid) - before, time.perf_counter() - began
        interval = 2.0  # [gateway] poll_interval_s default
        polls = count * wall / interval
        print(
            f"[{variant.name}] polling: {count} neurons every {interval:g} s, gateway CPU "
            f"{cpu / wall * 100:.1f}% of a core, {cpu / polls * 1e3:.2f} ms per poll"
        )
    finally:
        if gateway is not None:
            gateway.terminate()
            gateway.wait(30)
        upstream.terminate()
        upstream.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenario", choices=["streams", "startup", "polling", "fakes"])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--neurons", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--variant", action="append", default=[], help="NAME;KEY=VALUE;... (repeatable)")
    # For the "fakes" helper the scenarios start: --neurons fake neurons from --first-port on.
    parser.add_argument("--first-port", type=int, default=0)
    parser.add_argument("--gap-ms", type=float, default=0.0)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    if args.scenario == "fakes":
        asyncio.run(serve_fakes(args.first_port, args.neurons, args.gap_ms, args.tokens))
        return
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    variants = [Variant.parse(text) for text in args.variant] or [Variant("gateway")]
    for variant in variants:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            if args.scenario == "streams":
                asyncio.run(scenario_streams(variant, workdir, args.streams))
            elif args.scenario == "startup":
                asyncio.run(scenario_startup(variant, workdir, args.starts))
            else:
                asyncio.run(scenario_polling(variant, workdir, args.neurons, args.seconds))


if __name__ == "__main__":
    main()
