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
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fake_neuron import completion_body, control_replies  # noqa: E402
from gateway_overhead import EXE, free_port, start, tree_cpu_seconds, wait_ready, wait_up  # noqa: E402

LENGTH = re.compile(rb"content-length:\s*(\d+)")
# bench/fake_neuron.py's replies, encoded once: this neuron answers from a table.
NEURON_REPLIES = {
    b"/v1/chat/completions": completion_body(16),
    **{path.encode(): json.dumps(body).encode() for path, body in control_replies().items()},
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


@dataclass
class Tally:
    """What one load's connections saw: whole 200 replies, and everything else by kind."""

    done: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    stopping: bool = False  # the load is over: the connections it closes are no errors


class ClientProtocol(asyncio.Protocol):
    """One keep-alive connection in a closed loop: send, read one whole response, send again.

    A reply other than a 200 is counted in the tally's errors (and the loop goes on); a reply
    with no framing, or the gateway closing the connection, is counted and ends the connection.
    """

    def __init__(self, request: bytes, tally: Tally) -> None:
        self.request = request
        self.tally = tally
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.tally.stopping:
            self.tally.errors[f"connection lost: {exc or 'closed by the gateway'}"] += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            status = head.split(b"\r\n", 1)[0][:60]
            if b"transfer-encoding: chunked" in head:
                stop = self.buffer.find(b"\r\n0\r\n\r\n", end)
                if stop < 0:
                    return
                used = stop + 7
            elif length := LENGTH.search(head):
                if len(self.buffer) < end + 4 + int(length.group(1)):
                    return
                used = end + 4 + int(length.group(1))
            else:
                self.tally.errors[f"unframed reply: {status!r}"] += 1
                self.transport.close()
                return
            self.buffer = self.buffer[used:]
            if status.startswith(b"http/1.1 200"):
                self.tally.done += 1
            else:
                self.tally.errors[f"reply {status!r}"] += 1
            self.transport.write(self.request)  # type: ignore[attr-defined]


async def load(port: int, route: str, connections: int, seconds: float, pid: int) -> tuple[int, float, Tally]:
    """Responses completed in ``seconds`` over ``connections`` closed-loop connections, the CPU
    seconds process ``pid`` and its children spent meanwhile, and the whole load's tally (its
    errors, the warm-up's included)."""
    tally = Tally()
    loop = asyncio.get_running_loop()
    made = [
        await loop.create_connection(lambda: ClientProtocol(REQUESTS[route], tally), "127.0.0.1", port)
        for _ in range(connections)
    ]
    await asyncio.sleep(0.5)  # every connection busy before counting starts
    before, cpu_before = tally.done, tree_cpu_seconds(pid)
    await asyncio.sleep(seconds)
    done, cpu = tally.done - before, tree_cpu_seconds(pid) - cpu_before
    tally.stopping = True
    for transport, _ in made:
        transport.close()
    return done, cpu, tally


async def run(rounds: int, seconds: float, connections: int, workdir: Path) -> None:
    neuron_port = free_port()
    neuron = asyncio.create_task(serve_neuron(neuron_port))
    variants = {
        "1 worker, CPU 0": (1, "0"),
        "1 worker, CPUs 0-1": (1, "0,1"),
        "2 workers, CPUs 0-1": (2, "0,1"),
    }
    gateways: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    errors: defaultdict[str, Counter[str]] = defaultdict(Counter)
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
            for name, (process, port) in gateways.items():
                *_, tally = await load(port, route, connections, 1.0, process.pid)  # warm every worker's code
                errors[f"{route}, {name}"].update(tally.errors)
            for _ in range(rounds):
                for name, (process, port) in gateways.items():
                    done, spent, tally = await load(port, route, connections, seconds, process.pid)
                    rates[name].append(done / seconds)
                    cpu[name].append(spent / max(1, done))
                    errors[f"{route}, {name}"].update(tally.errors)
            print(f"\n== {route} ({connections} connections, {rounds} rounds of {seconds:.0f} s) ==")
            for name in gateways:
                rate, per = statistics.median(rates[name]), statistics.median(cpu[name]) * 1e6
                runs = ", ".join(f"{r:.0f}" for r in rates[name])
                print(f"{name:22} {rate:8.0f} req/s ({runs})   gateway CPU {per:6.1f} us per request")
                failed = errors[f"{route}, {name}"]
                if failed:
                    print(
                        f"{'':22} {failed.total()} errors: "
                        + "; ".join(f"{n} x {k}" for k, n in failed.items())
                    )
    finally:
        for process, _ in gateways.values():
            process.terminate()
        for process, _ in gateways.values():
            process.wait(30)
        neuron.cancel()
    failures = {where: failed for where, failed in errors.items() if failed}
    for where, failed in failures.items():
        print(f"error: {where}: {failed.total()} failed: {dict(failed)}", file=sys.stderr)
    if failures:
        raise SystemExit("the load generator met errors: the figures above are not comparable")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if (os.cpu_count() or 1) > 1:
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
