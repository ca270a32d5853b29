"""What the gateway adds: TTFT (p50/p99) and throughput relative to calling the upstream directly.

Side by side in one run, interleaved (direct, gateway, direct, gateway, ...) so machine noise
hits both equally. The gateway is pinned to CPU 0; the fake neuron and the load generator to
CPU 1 (on a machine with at least two cores).

    .venv/bin/python bench/gateway_overhead.py            # all scenarios
    .venv/bin/python bench/gateway_overhead.py --rounds 5 --scenario paced
    # two gateway configurations side by side, interleaved with direct in one run:
    .venv/bin/python bench/gateway_overhead.py --variant 'head;PYTHONPATH=<head>' --variant 'new'

A variant is ``NAME;KEY=VALUE;...``: upper-case keys are environment variables for that gateway
process (``PYTHONPATH`` to run another checkout), lower-case ones are ``[gateway]`` keys written
into its configuration as given (``workers=2``), except ``cpus``, the CPU list that gateway is
pinned to (``cpus=0,1``; CPU 0 otherwise), and ``exe``, the ``cortex-kernel`` to start (the one
beside this interpreter otherwise): ``exe=<venv>/bin/cortex-kernel`` runs the gateway on another
Python, such as a venv on the distribution's ``/usr/bin/python3``, the interpreter the RPMs
install on (docs/performance.md, "The interpreter"). Every variant's gateway runs at once, each
on its own port, and each round runs direct, then every anchor and variant in turn, the order rotating by
one each round. The gateway's CPU counts all its processes (the supervisor and every worker
with ``workers`` above 1).

    # one worker and two, side by side (docs/performance.md, "Several workers"):
    .venv/bin/python bench/gateway_overhead.py --scenario plain \
        --variant 'w1;workers=1' --variant 'w1-2cpus;workers=1;cpus=0,1' --variant 'w2;workers=2;cpus=0,1'

Scenarios (closed loop: each worker sends its next request when the last one ends):
paced (64 workers streaming 64 tokens 10 ms apart, starts staggered over one stream's length,
3 streams each), unpaced (32 workers streaming 64 tokens as fast as the upstream sends, 10
each), plain (32 workers sending non-streaming requests, 50 each). ``--tokens N`` streams N
tokens instead of 64: two runs at different lengths separate a stream's fixed cost from its
per-token cost.

Each arm prints the gateway's CPU per unit of work, and its split: user and system time, and
wake-ups (voluntary context switches of all its threads) per relayed token or request. On this
VM a paced token costs more the more often the gateway wakes, because each wake-up starts on
cold caches (docs/performance.md, issue #17).

Anchors: other proxies put in front of the same fake neuron and measured exactly like a gateway
variant (pinned to CPU 0, on its own port, the CPU of its whole process tree per request or
stream), so the gateway's figures have a yardstick in the same run. ``--anchor NAME[=COMMAND]``
(repeatable) names one: ``nginx`` (C, no LLM logic: a plain reverse proxy with keep-alive
upstream connections and no buffering; COMMAND defaults to ``/usr/sbin/nginx``, from
``apt-get install nginx-light``) or ``vllm-router`` (vLLM's Rust router with the fake neuron as
its one worker; COMMAND is how to start it, e.g. the ``vllm-router`` script of a separate
virtualenv made for the benchmark: ``python -m venv V && V/bin/pip install vllm-router``,
started with ``--host``, ``--port`` and ``--worker-urls``, its static worker list, and its
default policy). Both are benchmark-only tools, never project dependencies. A third,
``tcp-relay`` (``bench/tcp_relay.py``, no COMMAND needed), is the least a Python relay can do:
the bytes, unparsed, from one socket to the other on uvloop, one Python call per read; its CPU is
the floor of any proxy written in Python, as nginx's is of one in C. A fourth, ``http-relay``
(``bench/http_relay.py``), adds HTTP/1.1 and nothing else: llhttp on both sides, pooled upstream
connections, each piece of body framed again from the upstream's read callback, no ASGI and no
task per request; between the two, it shows what HTTP costs and what the gateway adds above it::

    .venv/bin/python bench/gateway_overhead.py --rounds 3 --scenario plain \
        --anchor nginx --anchor vllm-router=<venv>/bin/vllm-router --variant gateway

``--console-streams N`` adds a third arm to each round: the gateway again, with N operator
console event streams open (docs/console.md), read by a separate process pinned with the load
generator, so what the consoles cost shows as the gateway's CPU and TTFT, not the client's.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shlex
import shutil
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
JSON = {"content-type": "application/json"}


@dataclass
class Usage:
    """What a process (tree) has used so far: user and system CPU seconds, and wake-ups (the
    voluntary context switches of all its threads: each a sleep in the kernel, ``epoll_wait``
    mostly)."""

    user_s: float = 0.0
    system_s: float = 0.0
    wakeups: int = 0
    # The scheduler's run time of every thread, in nanoseconds (``/proc/PID/task/TID/schedstat``).
    # User and system time come in clock ticks (10 ms): a short round of paced streams uses a few
    # ticks, so the ticks only split this figure, and ``cpu_s`` is this one where it exists.
    run_s: float = 0.0

    @property
    def cpu_s(self) -> float:
        return self.run_s if self.run_s > 0 else self.user_s + self.system_s

    @property
    def user_share(self) -> float:
        """The share of ``cpu_s`` spent in user space, from the ticks."""
        ticks = self.user_s + self.system_s
        return self.user_s / ticks if ticks > 0 else 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.user_s + other.user_s,
            self.system_s + other.system_s,
            self.wakeups + other.wakeups,
            self.run_s + other.run_s,
        )

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            self.user_s - other.user_s,
            self.system_s - other.system_s,
            self.wakeups - other.wakeups,
            self.run_s - other.run_s,
        )


@dataclass
class Result:
    ttft: list[float] = field(default_factory=list)
    tokens: int = 0
    requests: int = 0
    seconds: float = 0.0
    gateway: Usage = field(default_factory=Usage)  # what the proxy used over the round

    def rate(self) -> float:
        return (self.tokens or self.requests) / self.seconds


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_up(url: str, log: Path | None = None, timeout_s: float = 120.0) -> None:
    """Until ``url`` answers 200 (a loaded machine can take a while to start a gateway); the error
    names ``log``, the daemon's output, when it does not come up."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as reply:
                    if reply.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up" + (f"; see {log}" if log else ""))


async def wait_ready(url: str, in_a_row: int = 20) -> None:
    """Until ``in_a_row`` fresh connections in a row find ``/health/ready`` 200: with several
    workers each polls the neuron itself, and the kernel hashes each connection to one of them."""
    ready = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        for _ in range(600):
            async with session.get(f"{url}/health/ready") as reply:
                ready = ready + 1 if reply.status == 200 else 0
            if ready >= in_a_row:
                return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not become ready")


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


def usage(pid: int) -> Usage:
    """:class:`Usage` of process ``pid`` so far, all its threads (Linux ``/proc``; zero elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        threads = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return Usage()
    tick = os.sysconf("SC_CLK_TCK")
    return Usage(
        int(fields[11]) / tick,
        int(fields[12]) / tick,
        sum(map(_sleeps, threads)),
        sum(map(_run_ns, threads)) / 1e9,
    )


def _sleeps(thread: Path) -> int:
    """A thread's voluntary context switches (0 once it has gone)."""
    try:
        status = thread.joinpath("status").read_text()
    except OSError:
        return 0
    return sum(int(line.split()[1]) for line in status.splitlines() if line.startswith("voluntary_ctxt_"))


def _run_ns(thread: Path) -> int:
    """A thread's CPU time in nanoseconds, from the scheduler (0 once it has gone, or without it)."""
    try:
        return int(thread.joinpath("schedstat").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    return usage(pid).cpu_s


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start(
    args: list[str], cpu: int | str | None, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    prefix = ["taskset", "-c", str(cpu)] if cpu is not None and (os.cpu_count() or 1) > 1 else []
    return subprocess.Popen(
        [*prefix, *args], stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
    )


@dataclass
class Variant:
    """One gateway configuration: its name, extra environment and extra ``[gateway]`` lines."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    gateway: list[str] = field(default_factory=list)
    cpus: str = "0"
    exe: str = EXE

    def config(self, port: int, upstream_port: int) -> str:
        """The gateway's ``cortex.toml``: listening on ``port``, the fake neuron its one node."""
        return (
            f'[gateway]\nlisten = "127.0.0.1:{port}"\nmetrics_listen = "127.0.0.1:0"\n'
            + "".join(f"{line}\n" for line in self.gateway)
            + f'\n[[neurons]]\nname = "fake"\nendpoint = "http://127.0.0.1:{upstream_port}"\n'
        )

    @classmethod
    def parse(cls, text: str) -> Variant:
        name, *items = text.split(";")
        variant = cls(name)
        for item in items:
            key, _, value = item.partition("=")
            if key.isupper():
                variant.env[key] = value
            elif key == "cpus":
                variant.cpus = value
            elif key == "exe":
                variant.exe = value
            else:
                variant.gateway.append(f"{key} = {value}")
        return variant


NGINX = "/usr/sbin/nginx"
# The anchors written in Python, in this folder: started with this interpreter, no COMMAND needed.
PYTHON_RELAYS = {"tcp-relay": "tcp_relay.py", "http-relay": "http_relay.py"}
ANCHORS = ("nginx", "vllm-router", *PYTHON_RELAYS)


@dataclass
class Anchor:
    """Another proxy in front of the fake neuron (``nginx``, ``vllm-router``, ``tcp-relay`` or
    ``http-relay``), started by ``command``."""

    name: str
    command: list[str]

    @classmethod
    def parse(cls, text: str) -> Anchor:
        name, _, command = text.partition("=")
        if name not in ANCHORS:
            raise SystemExit(f"--anchor {text!r}: the anchors are {', '.join(ANCHORS)}")
        if not command and name == "nginx":
            command = NGINX
        if not command and name in PYTHON_RELAYS:
            command = shlex.join([sys.executable, str(HERE / PYTHON_RELAYS[name])])
        if not command:
            raise SystemExit(f"--anchor {name} needs =COMMAND: how to start it (its venv's vllm-router)")
        words = shlex.split(command)
        if shutil.which(words[0]) is None:
            raise SystemExit(f"--anchor {name}: {words[0]} is not installed (see this script's --help)")
        return cls(name, words)

    def argv(self, port: int, upstream_port: int, workdir: Path) -> list[str]:
        """The command line that serves ``port`` in front of the fake neuron on ``upstream_port``."""
        if self.name == "vllm-router":
            upstream = f"http://127.0.0.1:{upstream_port}"
            return [*self.command, "--host", "127.0.0.1", "--port", str(port), "--worker-urls", upstream]
        if self.name in PYTHON_RELAYS:
            return [*self.command, "--port", str(port), "--upstream", f"127.0.0.1:{upstream_port}"]
        prefix = workdir / f"nginx-{port}"
        prefix.mkdir(exist_ok=True)
        (prefix / "nginx.conf").write_text(nginx_config(port, upstream_port, prefix))
        return [*self.command, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"]


def nginx_config(port: int, upstream_port: int, prefix: Path) -> str:
    """One worker (one core, as the gateway), keep-alive connections to the upstream, no
    buffering (each SSE chunk is relayed as it comes, as the gateway relays it), no access log."""
    return f"""daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    upstream neuron {{ server 127.0.0.1:{upstream_port}; keepalive 256; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://neuron;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"""


async def wait_answers(url: str, log: Path, timeout_s: float = 120.0) -> None:
    """Until a non-streamed completion through ``url`` succeeds (an anchor has no readiness route
    of its own that says its upstream is reachable)."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.post(f"{url}/v1/chat/completions", data=BODY_PLAIN, headers=JSON) as reply:
                    if reply.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not relay a request; see {log}")


def tree_usage(pid: int) -> Usage:
    """:class:`Usage` of ``pid`` and its children still running (a gateway with worker processes)."""
    total = usage(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    for child in children:
        total = total + tree_usage(int(child))
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its children still running."""
    return tree_usage(pid).cpu_s


async def scenario_run(
    name: str,
    rounds: int,
    workdir: Path,
    variants: list[Variant],
    consoles: int = 0,
    anchors: tuple[Anchor, ...] = (),
    tokens: int = 64,
) -> None:
    gap = {"paced": 10.0, "unpaced": 0.0, "plain": 0.0}[name]
    concurrency = {"paced": 64, "unpaced": 32, "plain": 32}[name]
    upstream_port = free_port()
    upstream = start(
        [
            *(sys.executable, str(HERE / "fake_neuron.py"), "--port", str(upstream_port)),
            *("--gap-ms", str(gap), "--tokens", str(tokens)),
        ],
        1,
        workdir / f"upstream-{name}.log",
    )
    gateways: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    direct = f"http://127.0.0.1:{upstream_port}"
    anchored: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        await wait_up(f"{direct}/health")  # before the gateways, so their first poll finds it
        for anchor in anchors:
            port = free_port()
            log = workdir / f"anchor-{name}-{anchor.name}.log"
            anchored[anchor.name] = (
                start(anchor.argv(port, upstream_port, workdir), 0, log),
                f"http://127.0.0.1:{port}",
            )
            await wait_answers(anchored[anchor.name][1], log)
        for variant in variants:
            port = free_port()
            config = workdir / f"cortex-{name}-{variant.name}.toml"
            config.write_text(variant.config(port, upstream_port))
            process = start(
                [variant.exe, "--log-level", "warning", "serve", "--config", str(config)],
                variant.cpus,
                workdir / f"gw-{name}-{variant.name}.log",
                variant.env,
            )
            gateways[variant.name] = (process, f"http://127.0.0.1:{port}")
        for _, via in gateways.values():
            await wait_up(f"{via}/health")
            await wait_ready(via)
            await run_round(via, name, 4, 4)  # warm connections and code paths
        for _, via in anchored.values():
            await run_round(via, name, 4, 4)
        await run_round(direct, name, 4, 4)
        results: dict[str, list[Result]] = {
            "direct": [],
            **{a: [] for a in anchored},
            **{v: [] for v in gateways},
        }
        if consoles:
            results.update({f"{v}+{consoles} consoles": [] for v in gateways})
        per_worker = {"paced": 3, "unpaced": 10, "plain": 50}[name]
        arms = [*anchored.items(), *gateways.items()]
        for n in range(rounds):
            results["direct"].append(await run_round(direct, name, concurrency, per_worker))
            # The order rotates by round, so no arm always runs just after direct or last.
            for label, (process, via) in arms[n % len(arms) :] + arms[: n % len(arms)]:
                before = tree_usage(process.pid)
                result = await run_round(via, name, concurrency, per_worker)
                result.gateway = tree_usage(process.pid) - before
                results[label].append(result)
                if consoles and label in gateways:
                    arm = f"{label}+{consoles} consoles"
                    ready, stop = multiprocessing.Event(), multiprocessing.Event()
                    reader = multiprocessing.Process(
                        target=console_process, args=(via, consoles, ready, stop)
                    )
                    reader.start()
                    await asyncio.get_running_loop().run_in_executor(None, ready.wait, 60)
                    before = tree_usage(process.pid)
                    result = await run_round(via, name, concurrency, per_worker)
                    result.gateway = tree_usage(process.pid) - before
                    results[arm].append(result)
                    stop.set()
                    reader.join(30)
        report(name, results)
    finally:
        started = [*anchored.values(), *gateways.values()]
        for process, _ in started:
            process.terminate()
        upstream.terminate()
        for process, _ in started:
            process.wait(30)
        upstream.wait(30)


def report(name: str, results: dict[str, list[Result]]) -> None:
    rate = {k: statistics.median(r.rate() for r in v) for k, v in results.items()}
    unit = "req/s" if name == "plain" else "tokens/s"
    what = "request" if name == "plain" else "token"
    print(f"\n== {name} ==")
    print(f"throughput  direct {rate['direct']:10.1f} {unit}")
    ttft = {k: [t for r in v for t in r.ttft] for k, v in results.items()}
    for label, via in results.items():
        if label == "direct":
            continue
        print(f"[{label}] throughput {rate[label]:10.1f} {unit}   ratio {rate[label] / rate['direct']:.3f}")
        busy = sum(r.gateway.cpu_s for r in via) / sum(r.seconds for r in via)
        per_unit = sum(r.gateway.cpu_s for r in via) / sum(r.tokens or r.requests for r in via) * 1e6
        per_stream = sum(r.gateway.cpu_s for r in via) / max(1, sum(len(r.ttft) for r in via)) * 1e3
        line = f"[{label}] gateway CPU {busy * 100:5.1f}% of a core, {per_unit:.1f} us per relayed {what}"
        if name != "plain":
            line += f", {per_stream:.2f} ms per stream"
        rounds = ", ".join(f"{r.gateway.cpu_s / (r.tokens or r.requests) * 1e6:.1f}" for r in via)
        print(f"{line} (rounds: {rounds})")
        units = sum(r.tokens or r.requests for r in via)
        user = sum(r.gateway.cpu_s * r.gateway.user_share for r in via) / units * 1e6
        wakeups = sum(r.gateway.wakeups for r in via) / units
        ticks = sum(r.gateway.user_s + r.gateway.system_s for r in via) / units * 1e6
        print(
            f"[{label}] split: user {user:.1f} us, system {per_unit - user:.1f} us,"
            f" {wakeups:.2f} wake-ups per relayed {what} (clock ticks alone: {ticks:.1f} us)"
        )
        if name != "plain":
            for q, qlabel in ((0.5, "p50"), (0.99, "p99")):
                d, g = pct(ttft["direct"], q) * 1000, pct(ttft[label], q) * 1000
                print(
                    f"[{label}] TTFT {qlabel} direct {d:7.2f} ms  gateway {g:7.2f} ms  added {g - d:+7.2f} ms"
                )
    # This VM's speed moves by a third between days, and every arm with it: against an anchor
    # measured in the same run, a figure carries from one day to the next.
    cpu = {
        label: sum(r.gateway.cpu_s for r in via) / sum(r.tokens or r.requests for r in via)
        for label, via in results.items()
        if label != "direct"
    }
    for anchor in ("nginx", "vllm-router"):
        if anchor in cpu and cpu[anchor] > 0:
            ratios = ", ".join(f"{label} {value / cpu[anchor]:.2f}" for label, value in cpu.items())
            print(f"CPU per {what} over {anchor}'s in this run: {ratios}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scenario", choices=["paced", "unpaced", "plain", "all"], default="all")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per stream (64)")
    parser.add_argument("--console-streams", type=int, default=0, help="also run with N console streams open")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME;KEY=VALUE;... a gateway configuration to run beside the others (repeatable)",
    )
    parser.add_argument(
        "--anchor",
        action="append",
        default=[],
        help="NAME[=COMMAND]: another proxy to measure beside the gateway, nginx or vllm-router (repeatable)",
    )
    args = parser.parse_args()
    variants = [Variant.parse(text) for text in args.variant] or [Variant("gateway")]
    anchors = tuple(Anchor.parse(text) for text in args.anchor)
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    names = ["paced", "unpaced", "plain"] if args.scenario == "all" else [args.scenario]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = os.environ.get("BENCH_WORKDIR", tmp)
        for name in names:
            consoles = args.console_streams
            asyncio.run(scenario_run(name, args.rounds, Path(tmp), variants, consoles, anchors, args.tokens))


if __name__ == "__main__":
    main()
