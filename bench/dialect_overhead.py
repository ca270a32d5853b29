"""Gateway CPU per streamed request, by dialect: OpenAI chat (the gateway's own relay), the
Anthropic Messages dialect and the OpenAI Responses dialect, each translating the same 64-token
stream from a fake neuron.

    .venv/bin/python bench/dialect_overhead.py             # 5 rounds
    .venv/bin/python bench/dialect_overhead.py --rounds 3 --workers 8 --requests 10

Rounds interleave the three endpoints (chat, messages, responses, chat, ...) so machine noise hits
all equally; the gateway is pinned to CPU 0, the fake neuron and the load generator to CPU 1.
Reported: the gateway's CPU time per request (median over rounds) and its ratio to chat's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway_overhead import EXE, HERE, cpu_seconds, free_port, start, wait_up

HI = [{"role": "user", "content": "hi"}]
ENDPOINTS = {
    "chat": ("/v1/chat/completions", {"model": "bench-model", "stream": True, "messages": HI}),
    "messages": ("/v1/messages", {"model": "bench-model", "stream": True, "max_tokens": 64, "messages": HI}),
    "responses": ("/v1/responses", {"model": "bench-model", "stream": True, "input": "hi", "store": False}),
}
TERMINAL = (b"[DONE]", b'"message_stop"', b'"response.completed"')


async def one(session: aiohttp.ClientSession, url: str, body: bytes) -> None:
    async with session.post(url, data=body, headers={"content-type": "application/json"}) as reply:
        assert reply.status == 200, reply.status
        text = await reply.read()
        assert any(mark in text for mark in TERMINAL), text[-300:]


async def run_round(base: str, name: str, workers: int, requests: int) -> None:
    path, document = ENDPOINTS[name]
    body = json.dumps(document).encode()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def worker() -> None:
            for _ in range(requests):
                await one(session, base + path, body)

        await asyncio.gather(*(worker() for _ in range(workers)))


async def main_async(rounds: int, workers: int, requests: int, workdir: Path) -> None:
    upstream_port, gateway_port = free_port(), free_port()
    upstream = start(
        [sys.executable, str(HERE / "fake_neuron.py"), "--port", str(upstream_port), "--finish"],
        1,
        workdir / "upstream.log",
    )
    config = workdir / "cortex.toml"
    config.write_text(
        f'[gateway]\nlisten = "127.0.0.1:{gateway_port}"\n\n'
        f'[[neurons]]\nname = "fake"\nendpoint = "http://127.0.0.1:{upstream_port}"\n'
    )
    gateway = start([EXE, "--log-level", "warning", "serve", "--config", str(config)], 0, workdir / "gw.log")
    try:
        base = f"http://127.0.0.1:{gateway_port}"
        await wait_up(f"http://127.0.0.1:{upstream_port}/health", workdir / "upstream.log")
        await wait_up(f"{base}/health", workdir / "gw.log")
        for name in ENDPOINTS:  # warm connections and code paths
            await run_round(base, name, 2, 3)
        per_request: dict[str, list[float]] = {name: [] for name in ENDPOINTS}
        for _ in range(rounds):
            for name in ENDPOINTS:
                before = cpu_seconds(gateway.pid)
                await run_round(base, name, workers, requests)
                per_request[name].append((cpu_seconds(gateway.pid) - before) / (workers * requests))
        chat = statistics.median(per_request["chat"])
        print(
            f"gateway CPU per streamed request (64 tokens), median of {rounds} rounds of {workers * requests}"
        )
        for name, values in per_request.items():
            median = statistics.median(values)
            print(f"  {name:10s} {median * 1e3:7.3f} ms   x{median / chat:5.2f} of chat")
    finally:
        gateway.terminate()
        upstream.terminate()
        gateway.wait(30)
        upstream.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--requests", type=int, default=10)
    args = parser.parse_args()
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main_async(args.rounds, args.workers, args.requests, Path(tmp)))


if __name__ == "__main__":
    main()
