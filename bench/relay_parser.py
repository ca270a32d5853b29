"""CPU of the relay's reply parser alone: this checkout's ``cortex_gateway.neuron_http`` beside
another checkout's, on the bytes an aiohttp neuron sends, in one run.

    git archive <commit> | tar -x -C <before>
    .venv/bin/python bench/relay_parser.py --before <before>/plugins/cortex_gateway/neuron_http.py

Figures (best of the rounds, both parsers alternating): a non-streamed reply read at once, a
stream's head, and a 64-token SSE stream read one chunk per read (as a paced stream arrives),
from which the cost per chunk. No sockets: each reply is fed to a ``NeuronResponse`` on a
connection stand-in that only records nothing, so only parsing and the reply's own bookkeeping
are timed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType

HEAD_SSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\nDate: Sun, 06 Dec 2026 13:00:00 GMT\r\n"
    b"Server: Python/3.11 aiohttp/3.11.0\r\n\r\n"
)


def token(i: int) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "bench-model",
        "choices": [{"index": 0, "delta": {"content": f" tok{i}"}, "finish_reason": None}],
    }
    data = b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


CHUNKS = [token(i) for i in range(64)] + [b"e\r\ndata: [DONE]\n\n\r\n", b"0\r\n\r\n"]
COMPLETION = json.dumps(
    {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"content": "x" * 64}}]}
).encode()
PLAIN = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\n"
    b"Date: Sun, 06 Dec 2026 13:00:00 GMT\r\nServer: Python/3.11 aiohttp/3.11.0\r\n\r\n" % len(COMPLETION)
) + COMPLETION


class Connection:
    """What a ``NeuronResponse`` calls on its connection, doing nothing (no socket here)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def release(self, response: object) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def one_round(module: ModuleType, connection: Connection, n: int) -> tuple[float, float, float]:
    reply = module.NeuronResponse
    started = time.perf_counter()
    for _ in range(n):
        response = reply(connection, None, False)
        response.feed(PLAIN)
        assert response._done
    plain = (time.perf_counter() - started) / n
    started = time.perf_counter()
    for _ in range(n):
        response = reply(connection, None, False)
        response.feed(HEAD_SSE)
        response.close()
    head = (time.perf_counter() - started) / n
    started = time.perf_counter()
    for _ in range(n):
        response = reply(connection, None, False)
        response.feed(HEAD_SSE)
        for chunk in CHUNKS:
            response.feed(chunk)
            response._pieces.clear()
        assert response._done
    stream = (time.perf_counter() - started) / n
    return plain, head, stream


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, required=True, help="another checkout's neuron_http.py")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--replies", type=int, default=3000, help="replies of each kind per round")
    args = parser.parse_args()
    modules = {
        "before": load("neuron_http_before", args.before),
        "now": load(
            "neuron_http_now", Path(__file__).resolve().parents[1] / "plugins/cortex_gateway/neuron_http.py"
        ),
    }
    connection = Connection(asyncio.new_event_loop())
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in modules}
    for n in range(args.rounds):
        order = list(modules) if n % 2 == 0 else list(modules)[::-1]
        for name in order:
            results[name].append(one_round(modules[name], connection, args.replies))
    best = {name: [min(r[i] for r in rounds) * 1e6 for i in range(3)] for name, rounds in results.items()}
    rows = [
        ("non-streamed reply, one read", 0),
        ("stream head", 1),
        (f"{len(CHUNKS)}-chunk stream, one read per chunk", 2),
    ]
    print(f"best of {args.rounds} rounds of {args.replies} replies; µs")
    print(f"{'':40}{'before':>10}{'now':>10}")
    for label, i in rows:
        print(f"{label:40}{best['before'][i]:10.2f}{best['now'][i]:10.2f}")
    per_chunk = {name: (b[2] - b[1]) / len(CHUNKS) for name, b in best.items()}
    print(f"{'per chunk':40}{per_chunk['before']:10.2f}{per_chunk['now']:10.2f}")


if __name__ == "__main__":
    main()
