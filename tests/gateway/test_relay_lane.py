"""The relay lane answers a relay route itself, with the same error rendering the app's
exception handlers give, and the gateway mounts one for each relay route."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Message

from cortex_gateway.relay_lane import RelayLane
from cortex_kernel.app import error_response
from cortex_kernel.errors import BadRequest


async def call(lane: RelayLane, path: str) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}
    await lane(scope, receive, send)
    return sent


async def test_the_lane_answers_with_its_endpoint() -> None:
    async def endpoint(request: Request) -> Response:
        return Response(b"relayed " + request.url.path.encode())

    sent = await call(RelayLane(endpoint), "/v1/chat/completions")
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"relayed /v1/chat/completions"


async def test_errors_are_rendered_as_the_app_renders_them(caplog: pytest.LogCaptureFixture) -> None:
    error = BadRequest("request body needs a 'model'", code="missing_model", param="model")

    async def failing(request: Request) -> Response:
        raise error

    async def gone(request: Request) -> Response:
        raise ClientDisconnect()

    async def broken(request: Request) -> Response:
        raise RuntimeError("secret detail")

    sent = await call(RelayLane(failing), "/v1/completions")
    expected = error_response(error)
    assert sent[0]["status"] == 400
    assert msgspec.json.decode(sent[1]["body"]) == msgspec.json.decode(expected.body)
    assert (await call(RelayLane(gone), "/v1/embeddings"))[0]["status"] == 499
    with caplog.at_level(logging.ERROR, logger="cortex_kernel.app"):
        sent = await call(RelayLane(broken), "/v1/completions")
    body = msgspec.json.decode(sent[1]["body"])
    assert sent[0]["status"] == 500 and body["error"]["code"] == "internal_error"
    assert b"secret detail" not in sent[1]["body"]
    assert "unhandled error on POST /v1/completions" in caplog.text
