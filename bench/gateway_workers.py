"""``[gateway] workers``: throughput and gateway CPU per request at 1 and 2 workers, side by side.

    .venv/bin/python bench/gateway_workers.py [--rounds 3] [--seconds 5] [--connections 64]

``bench/gateway_overhead.py`` cannot show a second worker's worth: its aiohttp load generator
saturates its core while the gateway is still mostly idle. Here both the load generator and the
fake neuron are raw asyncio protocols (a fixed request out, a response framed by length or
chunks counted in), each several times cheaper per request than the gateway, so the gateway is
what runs out of CPU. Two routes: ``live`` (``GET /health/live``: the server path alone) and
``relay`` (a non-streamed ``POST /v1/chat/completions`` relayed to the fake neuron).

The gateways run at once, each on its own port: one worker pinned to CPU 0, one worker free to
use both CPUs, and two workers free to use both; the load generator and the fake neuron are
pinned to CPU 1. Rounds are interleaved (each gateway in turn, ``--rounds`` times) and last
``--seconds`` each. Gateway CPU is the sum over its processes (supervisor and workers). On a
machine shared with other work the throughput moves with the neighbours' load; CPU per request
is the figure to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fake_neuron import completion_body  # noqa: E402
from gateway_overhead import EXE, free_port, start, tree_cpu_seconds, wait_ready, wait_up  # noqa: E402

MODEL = "bench-model"
LENGTH = re.compile(rb"content-length:\s*(\d+)")
COMPLETION = completion_body(16, MODEL)
NEURON_REPLIES = {
    b"/v1/chat/completions": COMPLETION,
    b"/models": json.dumps({"object": "list", "data": [{"id": MODEL, "state": "ready"}]}).encode(),
    b"/health": json.dumps({"status": "ok", "models": {MODEL: {"state": "ready"}}}).encode(),
    b"/discovery": json.dumps({"hostname": "bench", "devices": [], "harnesses": ["fake"]}).encode(),
}
BODY = b'{"model":"bench-model","messages":[{"role":"user","content":"hi"}]}'
REQUESTS = {
    "live": b"GET /health/live HTTP/1.1\r\nhost: bench\r\n\r\n",
    "relay": b"POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
    + f"content-length: {len(BODY)}\r\n\r\n".encode()
    + BODY,
}


class NeuronProtocol(asyncio.Protocol):
    """The fake neuron: every request answered at once from a table, by path, with a length."""

    def __init__(self) -> None:
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            path = head.split(b" ", 2)[1].split(b"?")[0]
            body = NEURON_REPLIES.get(path, b"{}")
            self.transport.write(  # type: ignore[attr-defined]
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (len(body), body)
            )


async def serve_neuron(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(NeuronProtocol, "127.0.0.1", port)
    await server.serve_forever()


class ClientProtocol(asyncio.Protocol):
    """One keep-alive connection in a closed loop: send, read one whole response, send again."""

    def __init__(self, request: bytes, counts: list[int]) -> None:
        self.request = request
        self.counts = counts
        self.buffer = b""
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            if not head.startswith(b"http/1.1 200"):
                raise RuntimeError(f"unexpected reply: {head[:80]!r}")
            if b"transfer-encoding: chunked" in head:
                stop = self.buffer.find(b"\r\n0\r\n\r\n", end)
                if stop < 0:
                    return
                used = stop + 7
            else:
                length = int(LENGTH.search(head).group(1))  # type: ignore[union-attr]
                if len(self.buffer) < end + 4 + length:
                    return
                used = end + 4 + length
            self.buffer = self.buffer[used:]
            self.counts[0] += 1
            self.transport.write(self.request)  # type: ignore[attr-defined]


async def load(port: int, route: str, connections: int, seconds: float, pid: int) -> tuple[int, float]:
    """Responses completed in ``seconds`` over ``connections`` closed-loop connections, and the
    CPU seconds process ``pid`` and its children spent meanwhile."""
    counts = [0]
    loop = asyncio.get_running_loop()
    made = [
        await loop.create_connection(lambda: ClientProtocol(REQUESTS[route], counts), "127.0.0.1", port)
        for _ in range(connections)
    ]
    await asyncio.sleep(0.5)  # every connection busy before counting starts
    before, cpu_before = counts[0], tree_cpu_seconds(pid)
    await asyncio.sleep(seconds)
    done, cpu = counts[0] - before, tree_cpu_seconds(pid) - cpu_before
    for transport, _ in made:
        transport.close()
    return done, cpu


async def run(rounds: int, seconds: float, connections: int, workdir: Path) -> None:
    neuron_port = free_port()
    neuron = asyncio.create_task(serve_neuron(neuron_port))
    variants = {
        "1 worker, CPU 0": (1, "0"),
        "1 worker, CPUs 0-1": (1, "0,1"),
        "2 workers, CPUs 0-1": (2, "0,1"),
    }
    gateways: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for name, (workers, cpus) in variants.items():
            port = free_port()
            config = workdir / f"cortex-{port}.toml"
            config.write_text(
                f'[gateway]\nlisten = "127.0.0.1:{port}"\nmetrics_listen = "127.0.0.1:0"\n'
                f"workers = {workers}\n"
                f'\n[[neurons]]\nname = "fake"\nendpoint = "http://127.0.0.1:{neuron_port}"\n'
            )
            args = [EXE, "--log-level", "warning", "serve", "--config", str(config)]
            gateways[name] = (start(args, cpus, workdir / f"gw-{port}.log"), port)
        for _, port in gateways.values():
            await wait_up(f"http://127.0.0.1:{port}/health")
            await wait_ready(f"http://127.0.0.1:{port}")
        for route in ("live", "relay"):
            rates: dict[str, list[float]] = {name: [] for name in gateways}
            cpu: dict[str, list[float]] = {name: [] for name in gateways}
            for process, port in gateways.values():
                await load(port, route, connections, 1.0, process.pid)  # warm every worker's code
            for _ in range(rounds):
                for name, (process, port) in gateways.items():
                    done, spent = await load(port, route, connections, seconds, process.pid)
                    rates[name].append(done / seconds)
                    cpu[name].append(spent / max(1, done))
            print(f"\n== {route} ({connections} connections, {rounds} rounds of {seconds:.0f} s) ==")
            for name in gateways:
                rate, per = statistics.median(rates[name]), statistics.median(cpu[name]) * 1e6
                runs = ", ".join(f"{r:.0f}" for r in rates[name])
                print(f"{name:22} {rate:8.0f} req/s ({runs})   gateway CPU {per:6.1f} us per request")
    finally:
        for process, _ in gateways.values():
            process.terminate()
        for process, _ in gateways.values():
            process.wait(30)
        neuron.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {1})
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with tempfile.TemporaryDirectory() as tmp, asyncio.Runner(loop_factory=factory) as runner:
        runner.run(run(args.rounds, args.seconds, args.connections, Path(tmp)))


if __name__ == "__main__":
    main()
