"""The dialect's endpoints: decode, call the neuron, encode, stream. Nothing else lives here.

Every endpoint is wrapped by :meth:`AnthropicRoutes._handler`, which renders any error in
Anthropic's envelope (the kernel's handler would use OpenAI's) and tags the response with a
``request-id``. The query string is ignored (Claude Code sends ``?beta=true``), as are unknown
body fields and ``anthropic-beta`` values, which are only logged at debug level.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cortex_anthropic.claude_code import claude_code_routes
from cortex_anthropic.disconnect import ClientGone, until_disconnect
from cortex_anthropic.errors import error_response, new_request_id
from cortex_anthropic.events import EventTranslator
from cortex_anthropic.exchange import Connection, Neuron, Plan, message_events, prewarm, prewarm_events
from cortex_anthropic.fold import MessageBuilder
from cortex_anthropic.models_view import model_info, wants_anthropic_shape
from cortex_anthropic.protocol import (
    CountTokensRequest,
    CountTokensResponse,
    Message,
    MessagesRequest,
    StreamEvent,
)
from cortex_anthropic.streaming import EventStreamResponse, sse_body
from cortex_anthropic.translate import generation_request, invalid, prompt_request, shows_reasoning
from cortex_kernel.bodies import read_body
from cortex_kernel.dialect import Upstream
from cortex_kernel.errors import BadRequest, CortexError, NotFound, openai_error_body

log = logging.getLogger(__name__)

T = TypeVar("T", bound=msgspec.Struct)
_encode = msgspec.json.Encoder().encode
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {
    kind: msgspec.json.Decoder(kind) for kind in (MessagesRequest, CountTokensRequest)
}
_keys_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])


def decode_request(body: bytes, kind: type[T]) -> T:
    """Decode a request body; any problem is a 400 ``invalid_request_error`` naming the field."""
    try:
        decoded: T = _decoders[kind].decode(body)
    except msgspec.ValidationError as exc:
        raise invalid("", exc) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:  # msgspec's answer to JSON nested ~1,000 levels deep
        raise BadRequest("the request body is not valid JSON: nested too deeply") from None
    if log.isEnabledFor(logging.DEBUG):
        known = set(kind.__struct_fields__)
        unknown = sorted(set(_keys_decoder.decode(body)) - known)
        if unknown:
            log.debug("ignoring unknown request fields: %s", ", ".join(unknown))
    return decoded


def json_response(value: msgspec.Struct, request_id: str) -> Response:
    return Response(_encode(value), media_type="application/json", headers={"request-id": request_id})


async def folded(events: AsyncIterator[StreamEvent]) -> Message:
    """The events of a non-streamed reply, as one message (the upstream is closed either way)."""
    builder = MessageBuilder()
    async with contextlib.aclosing(events):  # type: ignore[type-var]
        async for event in events:
            builder.apply(event)
    return builder.message


class AnthropicRoutes:
    """Handlers bound to the gateway's upstream and the dialect's settings."""

    def __init__(
        self,
        upstream: Upstream,
        *,
        ping_every_s: float,
        max_body_bytes: int,
    ) -> None:
        self.neuron = Neuron(upstream)
        self.ping_every_s = ping_every_s
        self.max_body_bytes = max_body_bytes

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/messages", self._handler(self.messages), methods=["POST"]),
            Route("/v1/messages/count_tokens", self._handler(self.count_tokens), methods=["POST"]),
            Route("/v1/models/{model_id:path}", self._handler(self.model), methods=["GET"]),
            *claude_code_routes(self.max_body_bytes),
        ]

    def _handler(
        self, endpoint: Callable[[Request, str], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            request_id = new_request_id()
            try:
                return await endpoint(request, request_id)
            except CortexError as exc:
                return error_response(exc, request_id)
            except (ClientGone, ClientDisconnect):  # gone mid-stream, or during its upload
                return Response(status_code=499)
            except Exception:
                log.exception("unhandled error on %s %s", request.method, request.url.path)
                return error_response(CortexError("internal error; see the gateway log"), request_id)

        return answer

    async def _body(self, request: Request) -> bytes:
        body = await read_body(request, self.max_body_bytes)
        betas = request.headers.get("anthropic-beta")
        if betas:
            log.debug("ignoring anthropic-beta: %s", betas)
        return body

    # -- endpoints ------------------------------------------------------------------------------

    async def messages(self, request: Request, request_id: str) -> Response:
        params = decode_request(await self._body(request), MessagesRequest)
        entry = self.neuron.chat_model(params.model)
        model = self.neuron.resolve(params.model)
        plan = Plan(
            model=model,
            chat=generation_request(params, model),
            max_tokens=params.max_tokens,
            context_length=entry.context_length,
            stops=tuple(params.stop_sequences or ()),
            count_prompt=bool(params.stream),
        )
        translator = EventTranslator(model, stops=plan.stops, show_reasoning=shows_reasoning(params))
        events: AsyncIterator[StreamEvent]
        connection: Connection | None = None
        if params.max_tokens == 0:
            events = prewarm_events(translator, await prewarm(self.neuron, plan))
        else:
            # A cold model is loaded inside connect(); a stream starts first so it can ping
            # meanwhile. Otherwise connect now, so refusals keep their HTTP status.
            if not (params.stream and not entry.loaded):
                connection = await self.neuron.connect(plan)
            events = message_events(self.neuron, plan, translator, connection)
        # The events generator closes the neuron stream when it ends, but a generator that never
        # started (the client left first) runs no cleanup: close it here as well (idempotent).
        close = connection.reply.close if connection is not None else None
        if params.stream:
            return EventStreamResponse(
                sse_body(events, self.ping_every_s), on_close=close, headers={"request-id": request_id}
            )
        try:
            return json_response(await until_disconnect(request, folded(events)), request_id)
        finally:
            if close is not None:
                close()

    async def count_tokens(self, request: Request, request_id: str) -> Response:
        params = decode_request(await self._body(request), CountTokensRequest)
        self.neuron.chat_model(params.model)
        model = self.neuron.resolve(params.model)
        counted = await self.neuron.count(model, prompt_request(params, model))
        return json_response(CountTokensResponse(input_tokens=counted.prompt_tokens), request_id)

    async def model(self, request: Request, request_id: str) -> Response:
        model_id = request.path_params["model_id"]
        entry = self.neuron.upstream.model(model_id)
        if not wants_anthropic_shape(request):
            if entry is None:
                error = NotFound(f"model {model_id!r} does not exist", code="model_not_found", param="model")
                return Response(openai_error_body(error), status_code=404, media_type="application/json")
            return Response(_encode(entry), media_type="application/json")
        if entry is None or not entry.serves_chat:
            raise NotFound(f"model: {model_id} does not exist", code="model_not_found", param="model")
        return json_response(model_info(entry), request_id)
