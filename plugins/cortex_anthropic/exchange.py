"""One ``/v1/messages`` exchange with a neuron: size the output, open the stream, read events.

**The output budget.** Claude Code asks for ``max_tokens`` of 32000 whatever the model, and a
local model's context is often smaller than prompt + 32000. The real API no longer rejects that
overshoot; it generates until the window is full and says ``model_context_window_exceeded``.
The dialect does the same: it clamps ``max_tokens`` to what the context leaves after the prompt
and never rejects it; only a prompt that leaves no room at all is refused ("prompt is too
long"). The prompt is measured with the neuron's ``/v1/count_tokens`` (the model's own
tokenizer and chat template). Counting costs a round trip and a template render, so it is
skipped when even a generous upper bound — one token per byte of the request, plus
:data:`TEMPLATE_SLACK_TOKENS` for the template's own text — plus ``max_tokens`` fits the
model's context length as the gateway last saw it. It is always done when stop sequences are
in play, since a stream the dialect cuts at a stop sequence carries no usage of its own, and for
every streamed exchange: ``message_start`` must carry the real prompt count (the same number
``count_tokens`` gives), because Claude Code reads it to decide when to compact, and a stream
otherwise learns the count only at its end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import msgspec
from msgspec import UNSET

from cortex_anthropic.chat_protocol import ChatCompletionRequest, TokenCount
from cortex_anthropic.errors import from_neuron, prompt_too_long
from cortex_anthropic.events import EventTranslator
from cortex_anthropic.protocol import DeltaUsage, MessageDelta, MessageStop, StopInfo, StreamEvent
from cortex_anthropic.streaming import chat_chunks
from cortex_kernel.catalogue_entry import CatalogueEntry
from cortex_kernel.dialect import Upstream, UpstreamReply
from cortex_kernel.errors import BadRequest, NotFound, UpstreamError
from cortex_kernel.routing import RouteHints

TEMPLATE_SLACK_TOKENS = 2048
CHAT_PATH = "/v1/chat/completions"
COUNT_PATH = "/v1/count_tokens"

_encode = msgspec.json.Encoder().encode
_count_decoder = msgspec.json.Decoder(TokenCount)


@dataclass(frozen=True)
class Plan:
    """What to ask a neuron for, before the prompt has been measured."""

    model: str
    chat: ChatCompletionRequest
    max_tokens: int
    context_length: int | None
    stops: tuple[str, ...] = ()
    hints: RouteHints | None = None  # a dialect's own routing hints; else ``route_hints(chat)``
    count_prompt: bool = False  # measure the prompt even when the output budget does not need it


@dataclass(frozen=True)
class Connection:
    """An open upstream stream and what was learnt while opening it."""

    reply: UpstreamReply
    prompt_tokens: int | None
    clamped: bool


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


async def _raise_for_status(reply: UpstreamReply, body: bytes | None = None) -> None:
    if reply.status < 400:
        return
    payload = body if body is not None else await reply.read()
    raise from_neuron(reply.status, payload, _header(reply.headers, "retry-after"))


class Neuron:
    """The dialect's side of :class:`cortex_kernel.dialect.Upstream`."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    def resolve(self, model: str) -> str:
        return self.upstream.resolve(model)

    def chat_model(self, model: str) -> CatalogueEntry:
        """The catalogue entry for ``model`` (an alias or an id); 404 if unknown, 400 if it is
        not a chat model."""
        entry = self.upstream.model(model) or self.upstream.model(self.resolve(model))
        if entry is None:
            raise NotFound(f"model: {model} does not exist", code="model_not_found", param="model")
        if not entry.serves_chat:
            raise BadRequest(f"model: {model} is an embedding model, not a chat model", param="model")
        return entry

    async def count(
        self, model: str, chat: ChatCompletionRequest, hints: RouteHints | None = None
    ) -> TokenCount:
        """The prompt's exact token count and the model's context length, from the neuron."""
        body = _encode(msgspec.structs.replace(chat, stream=False, stream_options=UNSET))
        reply = await self.upstream.open(COUNT_PATH, model, body, hints=hints or route_hints(chat))
        payload = await reply.read()
        await _raise_for_status(reply, payload)
        try:
            return _count_decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamError(f"the model server's token count is unreadable: {exc}") from exc

    async def connect(self, plan: Plan) -> Connection:
        """Measure the prompt if needed, clamp the output budget, and open the stream."""
        context_length = plan.context_length
        prompt: int | None = None
        upper_bound = len(_encode(plan.chat)) + TEMPLATE_SLACK_TOKENS + plan.max_tokens
        if plan.count_prompt or plan.stops or context_length is None or upper_bound > context_length:
            counted = await self.count(plan.model, plan.chat, plan.hints)
            prompt = counted.prompt_tokens
            context_length = counted.context_length or context_length
        limit, clamped = plan.max_tokens, False
        if prompt is not None and context_length is not None:
            room = context_length - prompt
            if room < 1:
                raise prompt_too_long(prompt, context_length)
            if room < limit:
                limit, clamped = room, True
        body = _encode(msgspec.structs.replace(plan.chat, max_completion_tokens=limit))
        reply = await self.open_chat(plan.model, body, plan.hints or route_hints(plan.chat))
        return Connection(reply=reply, prompt_tokens=prompt, clamped=clamped)

    async def open_chat(self, model: str, body: bytes, hints: RouteHints | None) -> UpstreamReply:
        """Open a chat stream on a neuron; a refusal is raised as the error it stands for (and
        the reply closed), so a caller only ever holds a reply that is streaming."""
        reply = await self.upstream.open(CHAT_PATH, model, body, hints=hints)
        try:
            await _raise_for_status(reply)
        except BaseException:
            reply.close()
            raise
        return reply


async def message_events(
    neuron: Neuron, plan: Plan, translator: EventTranslator, connection: Connection | None
) -> AsyncIterator[StreamEvent]:
    """The Anthropic events of one exchange.

    With ``connection`` None the upstream is opened here (a cold model loads inside
    :meth:`Neuron.connect`), so a streamed response can start — and ping — while the model
    loads; ``message_start`` follows once the prompt has been counted, so it carries the real
    ``input_tokens``. The pings that go out first are skipped by every Anthropic client (the
    SDKs drop ``ping`` before dispatching events).
    """
    if connection is None:
        connection = await neuron.connect(plan)
    yield translator.start(connection.prompt_tokens)
    translator.clamped = connection.clamped
    try:
        async for chunk in chat_chunks(connection.reply.chunks()):
            for event in translator.feed(chunk):
                yield event
            if translator.stopped:
                break
        for event in translator.finish():
            yield event
    finally:
        connection.reply.close()


async def prewarm(neuron: Neuron, plan: Plan) -> TokenCount:
    """``max_tokens: 0`` is the API's cache pre-warm: the model is loaded and the prompt counted
    (which is what warming means for a neuron), and nothing is generated."""
    counted = await neuron.count(plan.model, plan.chat)
    if counted.context_length is not None and counted.prompt_tokens >= counted.context_length:
        raise prompt_too_long(counted.prompt_tokens, counted.context_length)
    return counted


async def prewarm_events(translator: EventTranslator, counted: TokenCount) -> AsyncIterator[StreamEvent]:
    """The events of a pre-warm: an empty message that stopped at ``max_tokens``."""
    yield translator.start(counted.prompt_tokens)
    stop = StopInfo(stop_reason="max_tokens", stop_sequence=None)
    yield MessageDelta(delta=stop, usage=DeltaUsage(input_tokens=counted.prompt_tokens, output_tokens=0))
    yield MessageStop()


def route_hints(chat: ChatCompletionRequest) -> RouteHints | None:
    """``metadata.user_id`` (carried as the chat's ``user``) as the session key for the router:
    Claude Code puts its session id there, so a session's turns and token counts go to the
    replica that holds its prefix cache."""
    return RouteHints(session_key=chat.user) if isinstance(chat.user, str) else None
