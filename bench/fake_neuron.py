"""A fast fake neuron for gateway benchmarks: the routes the gateway polls plus an OpenAI
upstream that streams pre-encoded chunks, paced or as fast as it can.

Run: python bench/fake_neuron.py --port 18001 [--gap-ms 10] [--tokens 64]
It is a benchmark instrument, not a test double: it never runs in the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

MODEL = "bench-model"


def chunk(i: int) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "delta": {"content": f" tok{i}"}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def finish_chunks(tokens: int) -> list[bytes]:
    """The finish chunk and the usage chunk a real neuron ends a stream with (dialects need them)."""
    finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    usage = {
        "choices": [],
        "usage": {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens},
    }
    return [
        b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n" for body in (finish, usage)
    ]


def completion_body(tokens: int, model: str = MODEL) -> bytes:
    """The non-streamed reply of every fake neuron in bench/: one 64-character answer."""
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "x" * 64}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens},
        }
    ).encode()


def control_replies(model: str = MODEL) -> dict[str, dict[str, Any]]:
    """The bodies of the routes the gateway polls, by path: what every fake neuron in bench/ answers."""
    return {
        "/models": {"object": "list", "data": [{"id": model, "state": "ready", "context_length": 4096}]},
        "/health": {"status": "ok", "models": {model: {"state": "ready", "in_flight": 0, "queued": 0}}},
        "/discovery": {"hostname": "bench", "devices": [], "harnesses": ["fake"]},
    }


def build_app(tokens: int, gap_s: float, finish: bool = False) -> web.Application:
    chunks = [chunk(i) for i in range(tokens)] + (finish_chunks(tokens) if finish else [])
    done = b"data: [DONE]\n\n"
    completion = completion_body(tokens)

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return web.Response(body=completion, content_type="application/json")
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
        )
        await response.prepare(request)
        for piece in chunks:
            await response.write(piece)
            if gap_s:
                await asyncio.sleep(gap_s)
        await response.write(done)
        return response

    async def count_tokens(request: web.Request) -> web.Response:
        # The Anthropic dialect counts a streamed message's prompt before message_start.
        await request.read()
        return web.json_response({"prompt_tokens": 8, "context_length": 4096})

    def control(body: dict[str, Any]) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def reply(request: web.Request) -> web.Response:
            return web.json_response(body)

        return reply

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/count_tokens", count_tokens)
    for path, body in control_replies().items():
        app.router.add_get(path, control(body))
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--gap-ms", type=float, default=0.0)
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--finish", action="store_true", help="end streams with finish and usage chunks")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    web.run_app(
        build_app(args.tokens, args.gap_ms / 1000, args.finish), host="127.0.0.1", port=args.port, print=None
    )


if __name__ == "__main__":
    main()
