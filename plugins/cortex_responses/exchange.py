"""One ``/v1/responses`` exchange with a neuron: size the output, open the stream, read events.

The output budget follows the Anthropic dialect's rule (:mod:`cortex_anthropic.exchange`): a
``max_output_tokens`` larger than what the context leaves after the prompt is clamped to it,
never rejected, and only a prompt that leaves no room at all is refused (400
``context_length_exceeded``, both numbers in the message). Without ``max_output_tokens`` — Codex
never sends it — nothing is counted up front: the neuron generates until the reply ends or the
context is full, and refuses an over-long prompt itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import msgspec

from cortex_anthropic.chat_protocol import ChatCompletionRequest
from cortex_anthropic.exchange import Connection, Neuron, Plan
from cortex_anthropic.streaming import chat_chunks
from cortex_kernel.routing import RouteHints
from cortex_responses.events import EventTranslator
from cortex_responses.protocol import Response, StreamEvent

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class Exchange:
    """What to ask a neuron for."""

    model: str
    chat: ChatCompletionRequest
    max_output_tokens: int | None
    context_length: int | None
    prompt_cache_key: str | None = None

    @property
    def hints(self) -> RouteHints | None:
        """``prompt_cache_key`` (Codex sends its conversation id there), else ``user``, for the
        router: a conversation's turns go to the replica that holds its prefix cache."""
        user = self.chat.user if isinstance(self.chat.user, str) else None
        if self.prompt_cache_key is None and user is None:
            return None
        return RouteHints(prompt_cache_key=self.prompt_cache_key, session_key=user)


async def connect(neuron: Neuron, exchange: Exchange) -> Connection:
    """Open the neuron's stream (measuring and clamping first when there is a budget to clamp)."""
    if exchange.max_output_tokens is not None:
        plan = Plan(
            model=exchange.model,
            chat=exchange.chat,
            max_tokens=exchange.max_output_tokens,
            context_length=exchange.context_length,
            hints=exchange.hints,
        )
        return await neuron.connect(plan)
    reply = await neuron.open_chat(exchange.model, _encode(exchange.chat), exchange.hints)
    return Connection(reply=reply, prompt_tokens=None, clamped=False)


async def response_events(
    neuron: Neuron,
    exchange: Exchange,
    translator: EventTranslator,
    connection: Connection | None,
    on_done: Callable[[Response], None] | None = None,
) -> AsyncIterator[list[StreamEvent]]:
    """The Responses events of one exchange, in batches: the events one upstream chunk produced
    go out in one write (a delta opening an item brings its ``added`` events; the end brings the
    ``done`` events and the terminal one), which costs the gateway a write per chunk, not per event.

    ``response.created`` and ``response.in_progress`` are yielded before anything is awaited. With
    ``connection`` None the upstream is opened after them (a cold model loads inside
    :func:`connect`), so a streamed response can start — and keep alive — while the model loads.
    ``on_done`` gets the final response (completed or incomplete) before its event is yielded.
    """
    yield translator.start()
    if connection is None:
        connection = await connect(neuron, exchange)
    translator.input_tokens = connection.prompt_tokens
    try:
        async for chunk in chat_chunks(connection.reply.chunks()):
            events = translator.feed(chunk)
            if events:
                yield events
        events = translator.finish()
        if on_done is not None:
            on_done(translator.response)
        yield events
    finally:
        connection.reply.close()
