"""The dialect's endpoints: ``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{id}``.

Every endpoint is wrapped by :meth:`ResponsesRoutes._handler`, which renders any error in OpenAI's
envelope. Unknown body fields are ignored (logged at debug level).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cortex_anthropic.disconnect import ClientGone, until_disconnect
from cortex_anthropic.exchange import Connection, Neuron
from cortex_anthropic.streaming import EventStreamResponse
from cortex_kernel.dialect import Upstream
from cortex_kernel.errors import BadRequest, CortexError, NotFound, PayloadTooLarge
from cortex_responses.errors import error_response, previous_response_not_found
from cortex_responses.events import EventTranslator, new_id
from cortex_responses.exchange import Exchange, connect, response_events
from cortex_responses.protocol import (
    DeletedResponse,
    ResponsesRequest,
    StreamEvent,
)
from cortex_responses.protocol import (
    Response as ResponseObject,
)
from cortex_responses.store import ResponseStore
from cortex_responses.streaming import sse_body
from cortex_responses.translate import chat_request, input_items

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
_decoder = msgspec.json.Decoder(ResponsesRequest)
_keys_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_builtins = msgspec.to_builtins


def decode_request(body: bytes) -> ResponsesRequest:
    """Decode a request body; any problem is a 400 ``invalid_request_error`` naming the field."""
    try:
        decoded = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        problem, _, where = str(exc).partition(" - at `$")
        field = where.rstrip("`").lstrip(".")
        raise BadRequest(f"{field}: {problem}" if field else problem, param=field or None) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("the request body is not valid JSON: nested too deeply") from None
    if log.isEnabledFor(logging.DEBUG):
        unknown = sorted(set(_keys_decoder.decode(body)) - set(ResponsesRequest.__struct_fields__))
        if unknown:
            log.debug("ignoring unknown request fields: %s", ", ".join(unknown))
    return decoded


def json_response(value: msgspec.Struct) -> Response:
    return Response(_encode(value), media_type="application/json")


def initial_response(params: ResponsesRequest, model: str) -> ResponseObject:
    """The response as it starts: ``in_progress``, no output, the request's settings echoed."""
    text = _builtins(params.text) if params.text is not None else {"format": {"type": "text"}}
    return ResponseObject(
        id=new_id("resp"),
        created_at=int(time.time()),
        model=model,
        status="in_progress",
        output=[],
        instructions=params.instructions,
        tools=params.tools or [],
        tool_choice=params.tool_choice if params.tool_choice is not None else "auto",
        parallel_tool_calls=params.parallel_tool_calls if params.parallel_tool_calls is not None else True,
        temperature=params.temperature,
        top_p=params.top_p,
        max_output_tokens=params.max_output_tokens,
        previous_response_id=params.previous_response_id,
        reasoning=_builtins(params.reasoning) if params.reasoning is not None else None,
        text=text,
        metadata=params.metadata or {},
        user=params.user,
        prompt_cache_key=params.prompt_cache_key,
        store=params.store is not False,
    )


class ResponsesRoutes:
    """Handlers bound to the gateway's upstream, the store and the dialect's settings."""

    def __init__(
        self, upstream: Upstream, store: ResponseStore, *, keepalive_s: float, max_body_bytes: int
    ) -> None:
        self.neuron = Neuron(upstream)
        self.store = store
        self.keepalive_s = keepalive_s
        self.max_body_bytes = max_body_bytes

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/responses", self._handler(self.create), methods=["POST"]),
            Route("/v1/responses/{response_id}", self._handler(self.retrieve), methods=["GET"]),
            Route("/v1/responses/{response_id}", self._handler(self.delete), methods=["DELETE"]),
        ]

    def _handler(
        self, endpoint: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            try:
                return await endpoint(request)
            except CortexError as exc:
                return error_response(exc)
            except (ClientGone, ClientDisconnect):
                return Response(status_code=499)
            except Exception:
                log.exception("unhandled error on %s %s", request.method, request.url.path)
                return error_response(CortexError("internal error; see the gateway log"))

        return answer

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise PayloadTooLarge(f"request body is larger than {self.max_body_bytes} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise PayloadTooLarge(f"request body is larger than {self.max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _stored(self, response_id: str) -> ResponseObject:
        entry = self.store.get(response_id)
        if entry is None:
            raise NotFound(
                f"Response with id '{response_id}' not found.", code="not_found", param="response_id"
            )
        return entry.response

    # -- endpoints ------------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        params = decode_request(await self._body(request))
        history: list[dict[str, Any]] = []
        if params.previous_response_id is not None:
            previous = self.store.get(params.previous_response_id)
            if previous is None:
                raise previous_response_not_found(params.previous_response_id)
            history = previous.conversation
        items = [*history, *input_items(params.input)]
        entry = self.neuron.chat_model(params.model)
        model = self.neuron.resolve(params.model)
        chat, names = chat_request(params, model, items)
        exchange = Exchange(
            model=model,
            chat=chat,
            max_output_tokens=params.max_output_tokens,
            context_length=entry.context_length,
            prompt_cache_key=params.prompt_cache_key,
        )
        response = initial_response(params, model)
        reasoning = params.reasoning
        summarize = reasoning is not None and (reasoning.summary or reasoning.generate_summary) not in (
            None,
            "none",
        )
        translator = EventTranslator(response, names, summarize=summarize)
        connection: Connection | None = None
        # A cold model is loaded inside connect(); a stream starts first so it can keep alive
        # meanwhile. Otherwise connect now, so refusals keep their HTTP status.
        if not (params.stream and not entry.loaded):
            connection = await connect(self.neuron, exchange)
        keep = partial(self._keep, items) if response.store else None
        events = response_events(self.neuron, exchange, translator, connection, keep)
        close = connection.reply.close if connection is not None else None
        if params.stream:
            return EventStreamResponse(sse_body(events, translator, self.keepalive_s), on_close=close)
        try:
            return json_response(await until_disconnect(request, _folded(events, translator)))
        finally:
            if close is not None:
                close()

    def _keep(self, items: list[dict[str, Any]], response: ResponseObject) -> None:
        """Store a finished response with its conversation (not called for ``store: false``)."""
        self.store.put(response, [*items, *(_builtins(item) for item in response.output)])

    async def retrieve(self, request: Request) -> Response:
        return json_response(self._stored(request.path_params["response_id"]))

    async def delete(self, request: Request) -> Response:
        response_id = request.path_params["response_id"]
        self._stored(response_id)
        self.store.delete(response_id)
        return json_response(DeletedResponse(id=response_id))


async def _folded(events: AsyncIterator[list[StreamEvent]], translator: EventTranslator) -> ResponseObject:
    """The events of a non-streamed reply, drained: the translator's response is then final."""
    async with contextlib.aclosing(events):  # type: ignore[type-var]
        async for _ in events:
            pass
    return translator.response
