"""Server-sent events both ways: reading a neuron's OpenAI stream, writing Anthropic's.

Every Anthropic frame carries an ``event:`` line and a ``data:`` line: the SDKs dispatch on the
event name and drop data without one, while Zed reads only the ``data: `` lines and switches on
``type``. While the model is silent (a cold load, a long prefill, a queue) a ``ping`` goes out
every few seconds, so clients with an idle-stream timer (Claude Code has one) keep waiting. A
failure after the headers went out is sent as an ``error`` event, never as a cut-off stream.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import msgspec
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from cortex_anthropic.chat_protocol import ChatChunk
from cortex_anthropic.errors import error_event, from_stream_error
from cortex_anthropic.protocol import Ping, StreamEvent, event_name
from cortex_kernel.errors import CortexError, UpstreamError
from cortex_kernel.pacing import with_keepalives

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
_chunk_decoder = msgspec.json.Decoder(ChatChunk)


def sse_frame(event: StreamEvent) -> bytes:
    """``event: NAME`` + ``data: JSON`` + a blank line."""
    return b"event: " + event_name(event).encode() + b"\ndata: " + _encode(event) + b"\n\n"


async def sse_data(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The ``data`` payloads of an SSE byte stream (comments such as keep-alives are skipped)."""
    buffer = b""
    data: list[str] = []
    async for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
            if not line:
                if data:
                    yield "\n".join(data)
                    data = []
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
    if buffer.strip().startswith(b"data:"):
        data.append(buffer.strip().decode("utf-8", errors="replace")[5:].removeprefix(" "))
    if data:
        yield "\n".join(data)


async def chat_chunks(chunks: AsyncIterator[bytes]) -> AsyncIterator[ChatChunk]:
    """Decoded OpenAI chunks until ``[DONE]``; an error frame is raised as :class:`CortexError`."""
    async for payload in sse_data(chunks):
        if payload.strip() == "[DONE]":
            return
        try:
            chunk = _chunk_decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamError(f"the model server sent an unreadable chunk: {exc}") from exc
        if chunk.error is not None:
            raise from_stream_error(chunk.error)
        yield chunk


async def paced(events: AsyncIterator[StreamEvent], ping_every_s: float) -> AsyncIterator[StreamEvent]:
    """``events`` as they come, with a :class:`Ping` whenever none came for ``ping_every_s``
    (see :func:`cortex_kernel.pacing.with_keepalives`); closing this closes ``events``."""
    async with contextlib.aclosing(with_keepalives(events, ping_every_s)) as timed:
        async for event in timed:
            yield Ping() if event is None else event


async def sse_body(events: AsyncIterator[StreamEvent], ping_every_s: float) -> AsyncIterator[bytes]:
    """The response body of a streamed ``/v1/messages``: frames, pings, and errors as events."""
    try:
        async for event in paced(events, ping_every_s):
            yield sse_frame(event)
    except CortexError as exc:
        log.warning("stream failed: %s", exc.message)
        yield sse_frame(error_event(exc))
    except Exception:
        log.exception("stream failed")
        yield sse_frame(
            error_event(CortexError("internal error; see the gateway log", code="internal_error"))
        )


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` response that runs ``on_close`` however it ends.

    Starlette never starts the body generator when the client is gone before the first byte,
    and a generator that never started runs no ``finally``; ``on_close`` covers that case.
    """

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        on_close: Callable[[], None] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no", **(headers or {})},
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._on_close is not None:
                self._on_close()
