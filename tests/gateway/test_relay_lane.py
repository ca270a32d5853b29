"""The relay lane answers POSTs on the relay paths itself and leaves everything else to the app,
with the same error rendering the app's exception handler gives."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from cortex_gateway.relay_lane import RelayLane
from cortex_kernel.app import error_response
from cortex_kernel.errors import BadRequest


async def call(lane: RelayLane, method: str, path: str) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [], "query_string": b""}
    await lane(scope, receive, send)
    return sent


async def downstream(scope: Any, receive: Any, send: Any) -> None:
    await Response(b"router", status_code=405)(scope, receive, send)


async def test_a_post_on_a_relay_path_is_answered_by_the_lane() -> None:
    async def endpoint(request: Request) -> Response:
        return Response(b"relayed " + request.url.path.encode())

    lane = RelayLane(downstream, {"/v1/chat/completions": endpoint})
    sent = await call(lane, "POST", "/v1/chat/completions")
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"relayed /v1/chat/completions"


async def test_other_methods_and_paths_go_on_to_the_app() -> None:
    async def endpoint(request: Request) -> Response:
        raise AssertionError("not for the lane")

    lane = RelayLane(downstream, {"/v1/chat/completions": endpoint})
    for method, path in (("GET", "/v1/chat/completions"), ("POST", "/v1/models"), ("POST", "/admin/fleet")):
        sent = await call(lane, method, path)
        assert (sent[0]["status"], sent[1]["body"]) == (405, b"router")


async def test_errors_are_rendered_as_the_app_renders_them() -> None:
    error = BadRequest("request body needs a 'model'", code="missing_model", param="model")

    async def failing(request: Request) -> Response:
        raise error

    async def gone(request: Request) -> Response:
        raise ClientDisconnect()

    lane = RelayLane(downstream, {"/v1/completions": failing, "/v1/embeddings": gone})
    sent = await call(lane, "POST", "/v1/completions")
    expected = error_response(error)
    assert sent[0]["status"] == 400
    assert msgspec.json.decode(sent[1]["body"]) == msgspec.json.decode(expected.body)
    assert (await call(lane, "POST", "/v1/embeddings"))[0]["status"] == 499
