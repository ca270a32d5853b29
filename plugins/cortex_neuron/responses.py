"""Turning harness deltas into OpenAI responses: SSE chunks, or one aggregated JSON object.

The stream is produced by a task that feeds a queue, so the response side can send an SSE
keep-alive comment while the model is silent (loading caches, prefilling a long prompt) without
cancelling the harness's generator, and so that closing the response closes the generator,
which tells the harness to stop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import struct
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

import msgspec

from cortex_kernel.errors import CortexError, openai_error_body
from cortex_kernel.harness import Delta, Embeddings, ToolCallDelta, Usage

_encode = msgspec.json.Encoder().encode
KEEPALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"

Kind = Literal["chat", "text"]


def new_id(kind: Kind) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex


def _usage_json(usage: Usage) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cached_tokens:
        body["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    return body


def _tool_call_json(call: ToolCallDelta) -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": call.arguments}
    if call.name is not None:
        function["name"] = call.name
    body: dict[str, Any] = {"index": call.index, "function": function}
    if call.id is not None:
        body["id"] = call.id
        body["type"] = "function"
    return body


class ChunkWriter:
    """Builds the SSE frames of one streamed completion."""

    def __init__(self, kind: Kind, model: str, include_usage: bool) -> None:
        self.kind = kind
        self.model = model
        self.include_usage = include_usage
        self.id = new_id(kind)
        self.created = int(time.time())
        self.object = "chat.completion.chunk" if kind == "chat" else "text_completion"

    def _frame(self, choices: list[dict[str, Any]], usage: Usage | None = None) -> bytes:
        body: dict[str, Any] = {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None:
            body["usage"] = _usage_json(usage)
        return b"data: " + _encode(body) + b"\n\n"

    def first(self) -> bytes | None:
        if self.kind != "chat":
            return None
        return self._frame(
            [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
        )

    def delta(self, delta: Delta) -> list[bytes]:
        frames = []
        if self.kind == "chat":
            body: dict[str, Any] = {}
            if delta.reasoning:
                body["reasoning_content"] = delta.reasoning
            if delta.text:
                body["content"] = delta.text
            if delta.tool_calls:
                body["tool_calls"] = [_tool_call_json(call) for call in delta.tool_calls]
            if body or delta.finish_reason:
                choice = {"index": 0, "delta": body, "finish_reason": delta.finish_reason}
                frames.append(self._frame([choice]))
        elif delta.text or delta.finish_reason:
            frames.append(
                self._frame(
                    [{"index": 0, "text": delta.text, "logprobs": None, "finish_reason": delta.finish_reason}]
                )
            )
        if delta.usage is not None and self.include_usage:
            frames.append(self._frame([], usage=delta.usage))
        return frames

    @staticmethod
    def error(error: CortexError) -> bytes:
        return b"data: " + openai_error_body(error) + b"\n\n"


class DeltaPump:
    """Runs a harness generator in its own task and hands deltas over through a queue.

    Closing the pump cancels that task, which closes the generator, which is how the harness
    learns that the client is gone.
    """

    def __init__(self, deltas: AsyncIterator[Delta], registry: set[DeltaPump] | None = None) -> None:
        self._deltas = deltas
        self._queue: asyncio.Queue[Delta | BaseException | None] = asyncio.Queue(maxsize=64)
        self._task = asyncio.get_running_loop().create_task(self._produce(), name="generation")
        self._peeked: list[Delta | BaseException | None] = []
        self._registry = registry  # the open pumps, so a drain can end them; once per request
        if registry is not None:
            registry.add(self)

    async def _produce(self) -> None:
        try:
            async for delta in self._deltas:
                await self._queue.put(delta)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await self._queue.put(exc)
            return
        finally:
            with contextlib.suppress(Exception):
                await self._deltas.aclose()  # type: ignore[attr-defined]
        await self._queue.put(None)

    async def get(self, wait_s: float) -> Delta | BaseException | None:
        """The next item; ``TimeoutError`` when nothing came within ``wait_s`` seconds."""
        if self._peeked:
            return self._peeked.pop()
        # Not ``asyncio.wait_for``: on Python 3.11 it returns a result that arrives in the step
        # it is cancelled, and a stream whose client just left would read on.
        async with asyncio.timeout(wait_s):
            return await self._queue.get()

    async def raise_early_error(self, within_s: float) -> None:
        """Re-raise an error the harness reports at once (e.g. prompt too long) as an HTTP error."""
        try:
            item = await self.get(within_s)
        except TimeoutError:
            return
        if isinstance(item, CortexError):
            await self.close()
            raise item
        self._peeked.append(item)

    def interrupt(self, error: CortexError) -> None:
        """Stop generating and make ``error`` the next (and last) item the stream reads, so it
        ends with an error frame (the neuron is about to stop)."""
        self._task.cancel()  # its pending put, if any, raises CancelledError: nothing follows
        self._peeked.clear()
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(error)

    async def close(self) -> None:
        if self._registry is not None:
            self._registry.discard(self)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


async def sse_stream(pump: DeltaPump, writer: ChunkWriter, keepalive_s: float = 1.0) -> AsyncIterator[bytes]:
    """Frames for the pump's deltas; keep-alives while silent; an error frame if generation fails."""
    try:
        first = writer.first()
        if first:
            yield first
        while True:
            try:
                item = await pump.get(keepalive_s)
            except TimeoutError:
                yield KEEPALIVE
                continue
            if item is None:
                break
            if isinstance(item, BaseException):
                error = (
                    item
                    if isinstance(item, CortexError)
                    else CortexError("generation failed", code="internal_error")
                )
                yield ChunkWriter.error(error)
                break
            for frame in writer.delta(item):
                yield frame
        yield DONE
    finally:
        await pump.close()


class Aggregate:
    """The whole of a non-streamed generation."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None

    def add(self, delta: Delta) -> None:
        if delta.text:
            self.text.append(delta.text)
        if delta.reasoning:
            self.reasoning.append(delta.reasoning)
        for call in delta.tool_calls:
            entry = self.calls.setdefault(
                call.index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
            )
            if call.id is not None:
                entry["id"] = call.id
            if call.name is not None:
                entry["function"]["name"] = call.name
            entry["function"]["arguments"] += call.arguments
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason
        if delta.usage is not None:
            self.usage = delta.usage


async def aggregate(deltas: AsyncIterator[Delta]) -> Aggregate:
    result = Aggregate()
    try:
        async for delta in deltas:
            result.add(delta)
    finally:
        with contextlib.suppress(Exception):
            await deltas.aclose()  # type: ignore[attr-defined]
    return result


def chat_completion(model: str, result: Aggregate) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": "".join(result.text) or None}
    if result.reasoning:
        message["reasoning_content"] = "".join(result.reasoning)
    if result.calls:
        message["tool_calls"] = [result.calls[i] for i in sorted(result.calls)]
    body: dict[str, Any] = {
        "id": new_id("chat"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": result.finish_reason or "stop"}],
    }
    if result.usage is not None:
        body["usage"] = _usage_json(result.usage)
    return body


def text_completion(model: str, result: Aggregate) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": new_id("text"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": "".join(result.text),
                "logprobs": None,
                "finish_reason": result.finish_reason or "stop",
            }
        ],
    }
    if result.usage is not None:
        body["usage"] = _usage_json(result.usage)
    return body


def embeddings_response(model: str, result: Embeddings, encoding_format: str) -> dict[str, Any]:
    data = []
    for index, vector in enumerate(result.vectors):
        embedding: Any = vector
        if encoding_format == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
    }
