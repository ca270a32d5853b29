"""``ScriptedNeuron``: an in-process test double of a neuron, for exact gateway and dialect cases.

A real neuron with a tiny random model cannot be made to emit a particular tool call, a
reasoning block or a stop string, so tests put this double behind a real gateway. It is a small
aiohttp app on loopback, in its own thread, that serves the routes the gateway polls
(``/discovery``, ``/models``, ``/health``) and the ones it routes to (``/models/load``,
``/v1/chat/completions``, ``/v1/count_tokens``). Replies are scripted per test
(:meth:`ScriptedNeuron.then`), in OpenAI's own wire shapes (built from the ``openai`` SDK's
types, so this module needs the ``openai`` package: a test dependency, never imported by the
daemons), and every request body it receives is recorded so a test can check what was sent
upstream. Plugin authors (a dialect, say) use it the same way the built-in tests do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from openai.types.chat import ChatCompletionChunk
from openai.types.chat.chat_completion_chunk import Choice, ChoiceDelta, ChoiceDeltaToolCall
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCallFunction as ToolFunction
from openai.types.completion_usage import CompletionUsage, PromptTokensDetails

MODEL = "scripted"


@dataclass
class Stream:
    """A streamed reply: each item is SSE bytes to write, or a pause in seconds."""

    frames: list[bytes | float]
    status: int = 200


@dataclass
class Json:
    """A JSON reply (an answer, or an OpenAI-envelope error)."""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


def chunk(
    *,
    content: str | None = None,
    reasoning: str | None = None,
    tool_calls: list[ChoiceDeltaToolCall] | None = None,
    finish: str | None = None,
    choices: bool = True,
    usage: CompletionUsage | None = None,
) -> bytes:
    """One OpenAI chunk as an SSE frame (``reasoning`` goes in ``reasoning_content``)."""
    delta = ChoiceDelta(content=content, tool_calls=tool_calls)
    if reasoning is not None:
        delta.reasoning_content = reasoning  # type: ignore[attr-defined]
    body = ChatCompletionChunk(
        id="chatcmpl-scripted",
        object="chat.completion.chunk",
        created=0,
        model=MODEL,
        choices=[Choice(index=0, delta=delta, finish_reason=finish)] if choices else [],  # type: ignore[arg-type]
        usage=usage,
    )
    return b"data: " + body.model_dump_json(exclude_none=True).encode() + b"\n\n"


def tool_call(
    index: int, *, id: str | None = None, name: str | None = None, arguments: str | None = None
) -> ChoiceDeltaToolCall:
    return ChoiceDeltaToolCall(
        index=index,
        id=id,
        type="function" if id else None,
        function=ToolFunction(name=name, arguments=arguments),
    )


def usage(prompt: int, completion: int, cached: int = 0) -> CompletionUsage:
    return CompletionUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached) if cached else None,
    )


DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"


def reply(
    *parts: bytes | float, finish: str = "stop", prompt: int = 11, completion: int = 5, cached: int = 0
) -> Stream:
    """A whole streamed reply: the role chunk, ``parts``, the finish chunk, usage and ``[DONE]``."""
    first = chunk(content="")
    end = [chunk(finish=finish), chunk(choices=False, usage=usage(prompt, completion, cached)), DONE]
    return Stream([first, *parts, *end])


def text_reply(text: str, **kwargs: Any) -> Stream:
    return reply(chunk(content=text), **kwargs)


def openai_error(
    status: int,
    message: str,
    code: str,
    kind: str = "invalid_request_error",
    fields: dict[str, Any] | None = None,
    **headers: str,
) -> Json:
    """An OpenAI-envelope error; ``fields`` adds structured ones (``prompt_tokens``, ...)."""
    error = {"message": message, "type": kind, "code": code, "param": None, **(fields or {})}
    return Json({"error": error}, status, headers)


class ScriptedNeuron:
    """A fake neuron on loopback, in its own thread and event loop (the gateway's aiohttp client
    and the SDK under test run elsewhere)."""

    def __init__(self, context_length: int = 4096, ready: tuple[str, ...] = (MODEL,)) -> None:
        self.context_length = context_length
        self.ready = {model: context_length for model in ready}
        self.load_delay_s = 0.0
        self.models_delay_s = 0.0  # how long ``GET /models`` takes (a poll overtaken meanwhile)
        self.chat_replies: deque[Stream | Json] = deque()
        self.count_replies: deque[Json] = deque()
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.disconnects = 0
        self.in_flight = 0  # chat requests being answered, reported in /models and /health
        self.loads: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="scripted-neuron")
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- scripting ------------------------------------------------------------------------------

    def then(self, *replies: Stream | Json) -> ScriptedNeuron:
        """Queue chat replies, answered in order (an empty queue answers "Hello there.")."""
        self.chat_replies.extend(replies)
        return self

    def bodies(self, path: str = "/v1/chat/completions") -> list[dict[str, Any]]:
        return [body for seen, body in self.received if seen == path]

    def wait_for_disconnects(self, count: int, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.disconnects < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.disconnects >= count

    @property
    def last(self) -> dict[str, Any]:
        return self.bodies()[-1]

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> ScriptedNeuron:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/discovery", self._discovery)
        app.router.add_get("/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_post("/models/load", self._load)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/count_tokens", self._count)
        # handler_cancellation: a client that leaves cancels its handler, as on a real neuron.
        self._runner = web.AppRunner(app, handle_signals=False, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    # -- routes ---------------------------------------------------------------------------------

    async def _discovery(self, request: web.Request) -> web.Response:
        return web.json_response({"hostname": "scripted", "devices": [], "harnesses": ["scripted"]})

    def _entries(self) -> list[dict[str, Any]]:
        return [
            {
                "id": model,
                "state": "ready",
                "context_length": context,
                "in_flight": self.in_flight,
                "queued": 0,
            }
            for model, context in self.ready.items()
        ]

    async def _models(self, request: web.Request) -> web.Response:
        entries = self._entries()  # as it stood when the poll asked
        await asyncio.sleep(self.models_delay_s)
        return web.json_response({"object": "list", "data": entries})

    async def _health(self, request: web.Request) -> web.Response:
        models = {
            entry["id"]: {"state": "ready", "in_flight": entry["in_flight"], "queued": 0}
            for entry in self._entries()
        }
        return web.json_response({"status": "ok", "models": models})

    async def _load(self, request: web.Request) -> web.Response:
        body = await request.json()
        model = body["profile"]["id"]
        self.loads.append(model)
        await asyncio.sleep(self.load_delay_s)
        self.ready[model] = self.context_length
        return web.json_response({"id": model, "state": "ready", "context_length": self.context_length})

    async def _count(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append((request.path, body))
        if self.count_replies:
            return self._json(self.count_replies.popleft())
        prompt = len(json.dumps(body["messages"])) // 4 + 1
        return web.json_response(
            {"model": body["model"], "prompt_tokens": prompt, "context_length": self.context_length}
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append((request.path, body))
        scripted = self.chat_replies.popleft() if self.chat_replies else text_reply("Hello there.")
        if isinstance(scripted, Json):
            return self._json(scripted)
        response = web.StreamResponse(status=scripted.status, headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        self.in_flight += 1
        try:
            for frame in scripted.frames:
                if isinstance(frame, float):
                    await asyncio.sleep(frame)
                else:
                    await response.write(frame)
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects += 1
            raise
        finally:
            self.in_flight -= 1
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    @staticmethod
    def _json(scripted: Json) -> web.Response:
        return web.json_response(scripted.body, status=scripted.status, headers=scripted.headers)
