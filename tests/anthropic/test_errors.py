"""Every failure answers in Anthropic's envelope with Anthropic's type and status, and a failure
after a stream has started is an ``error`` event, never a cut-off stream."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import pytest

from cortex_anthropic.dialect import AnthropicDialect
from cortex_kernel.config.schema import AuthSection
from cortex_kernel.keys import key_digest
from tests.anthropic.scripted import DONE, Json, Stream, chunk, openai_error, reply
from tests.anthropic.sse import post_stream, request
from tests.dialect_gateway import Gateway


def envelope(response: httpx2.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"type", "error", "request_id"} and body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["request_id"] == response.headers["request-id"]
    error: dict[str, Any] = body["error"]
    return error


NEURON_ERRORS = [
    # (neuron reply, HTTP status, Anthropic type, SDK exception)
    (
        openai_error(503, "model busy", "model_overloaded", "overloaded_error", None, **{"retry-after": "3"}),
        529,
        "overloaded_error",
        anthropic.OverloadedError,
    ),
    (
        openai_error(429, "slow down", "rate_limit_exceeded", "rate_limit_error"),
        429,
        "rate_limit_error",
        anthropic.RateLimitError,
    ),
    (
        openai_error(401, "bad neuron token", "invalid_api_key", "authentication_error"),
        401,
        "authentication_error",
        anthropic.AuthenticationError,
    ),
    (
        openai_error(403, "not allowed", "model_not_allowed", "permission_error"),
        403,
        "permission_error",
        anthropic.PermissionDeniedError,
    ),
    (
        openai_error(404, "not loaded", "model_not_loaded", "not_found_error"),
        404,
        "not_found_error",
        anthropic.NotFoundError,
    ),
    (openai_error(413, "too big", "request_too_large"), 413, "request_too_large", anthropic.APIStatusError),
    (openai_error(422, "bad type", "invalid_type"), 400, "invalid_request_error", anthropic.BadRequestError),
    (
        openai_error(500, "boom", "internal_error", "api_error"),
        500,
        "api_error",
        anthropic.InternalServerError,
    ),
    (Json("not json at all", 502), 502, "api_error", anthropic.InternalServerError),
]


@pytest.mark.parametrize(("scripted", "status", "kind", "exception"), NEURON_ERRORS)
def test_neuron_errors_map_to_anthropic_types_and_statuses(
    gateway: Gateway[anthropic.Anthropic],
    scripted: Json,
    status: int,
    kind: str,
    exception: type[anthropic.APIStatusError],
) -> None:
    # A neuron's 404 means the model left that node since the last poll, so the gateway places
    # the request again (three attempts in all); only a 404 on every attempt reaches the client.
    replies = [scripted] * (3 if status == 404 else 1)
    gateway.neuron.then(*replies)
    response = gateway.http.post("/v1/messages", json=request())
    assert response.status_code == status
    assert envelope(response)["type"] == kind
    if status == 529:
        assert response.headers["retry-after"] == "3"
    gateway.neuron.then(*replies)
    with pytest.raises(exception) as caught:
        gateway.client.messages.create(**request())
    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == kind


def test_the_same_errors_answer_with_their_status_when_streaming_a_warm_model(
    gateway: Gateway[anthropic.Anthropic],
) -> None:
    gateway.neuron.then(
        openai_error(503, "queue full", "model_overloaded", "overloaded_error", None, **{"retry-after": "1"})
    )
    with pytest.raises(anthropic.OverloadedError), gateway.client.messages.stream(**request()) as events:
        list(events)


def test_an_unknown_model_is_not_found(gateway: Gateway[anthropic.Anthropic]) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        gateway.client.messages.create(**request(model="claude-nonexistent"))
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "not_found_error"
    assert "claude-nonexistent" in caught.value.body["error"]["message"]


def test_an_embedding_model_is_a_bad_request(
    make_gateway: Callable[..., Gateway[anthropic.Anthropic]],
) -> None:
    gateway = make_gateway(embedding=("embedder",))
    response = gateway.http.post("/v1/messages", json=request(model="embedder"))
    assert response.status_code == 400 and "embedding" in envelope(response)["message"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "Expected `object`"),
        (b'{"model": "scripted", "messages": []}', "max_tokens"),
        (b'{"model": "scripted", "max_tokens": "many", "messages": []}', "max_tokens"),
        (b'{"model": "scripted", "max_tokens": -1, "messages": []}', "max_tokens"),
        (b'{"model": "scripted", "max_tokens": 5, "messages": []}', "at least one message"),
        (
            b'{"model": "scripted", "max_tokens": 5, "messages": [{"role": "robot", "content": "x"}]}',
            "messages[0].role",
        ),
        (
            b'{"model": "scripted", "max_tokens": 5, "messages": [], "tool_choice": {"type": "sometimes"}}',
            "tool_choice.type",
        ),
    ],
)
def test_malformed_requests_are_invalid_request_errors_naming_the_field(
    gateway: Gateway[anthropic.Anthropic], body: bytes, needle: str
) -> None:
    response = gateway.http.post("/v1/messages", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = envelope(response)
    assert error["type"] == "invalid_request_error" and needle in error["message"]


def test_a_body_over_the_limit_is_request_too_large(
    make_gateway: Callable[..., Gateway[anthropic.Anthropic]],
) -> None:
    gateway = make_gateway(dialect=AnthropicDialect(max_body_bytes=1024))
    response = gateway.http.post("/v1/messages", json=request(system="x" * 2048))
    assert response.status_code == 413 and envelope(response)["type"] == "request_too_large"


def test_a_prompt_over_the_context_is_prompt_is_too_long(gateway: Gateway[anthropic.Anthropic]) -> None:
    gateway.neuron.count_replies.append(Json({"prompt_tokens": 5000, "context_length": 4096}))
    with pytest.raises(anthropic.BadRequestError) as caught:
        gateway.client.messages.create(**request(stop_sequences=["x"]))
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["message"] == "prompt is too long: 5000 tokens > 4095 maximum"
    assert not gateway.neuron.bodies()  # refused before generating


def test_the_neurons_own_context_error_gets_the_same_wording(gateway: Gateway[anthropic.Anthropic]) -> None:
    counts = {"prompt_tokens": 4500, "context_length": 4096}
    gateway.neuron.then(openai_error(400, "worded any way at all", "context_length_exceeded", fields=counts))
    response = gateway.http.post("/v1/messages", json=request())
    assert response.status_code == 400
    assert envelope(response)["message"] == "prompt is too long: 4500 tokens > 4095 maximum"


def test_a_context_error_without_counts_keeps_the_neurons_words(
    gateway: Gateway[anthropic.Anthropic],
) -> None:
    neuron_message = "This model's maximum context length is 4096 tokens, but the prompt has 4500 tokens."
    gateway.neuron.then(openai_error(400, neuron_message, "context_length_exceeded"))
    response = gateway.http.post("/v1/messages", json=request())
    assert response.status_code == 400
    assert envelope(response)["message"] == f"prompt is too long: {neuron_message}"


def test_a_failure_mid_stream_is_an_error_event(gateway: Gateway[anthropic.Anthropic]) -> None:
    failure = b'data: {"error": {"message": "out of memory", "type": "overloaded_error", "code": null}}\n\n'
    gateway.neuron.then(Stream([chunk(content=""), chunk(content="partial"), failure, DONE]))
    events = post_stream(gateway.http, request())
    assert events[0][0] == "message_start"
    assert events[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "out of memory"}},
    )
    gateway.neuron.then(Stream([chunk(content=""), chunk(content="partial"), failure, DONE]))
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        gateway.client.messages.stream(**request()) as stream,
    ):
        list(stream)
    assert "out of memory" in str(caught.value)


def test_a_stream_that_ends_without_a_finish_is_an_error_not_an_end_turn(
    gateway: Gateway[anthropic.Anthropic],
) -> None:
    gateway.neuron.then(Stream([chunk(content=""), chunk(content="cut off")]))
    events = post_stream(gateway.http, request())
    assert events[-1][0] == "error" and events[-1][1]["error"]["type"] == "api_error"
    assert "message_stop" not in [name for name, _ in events]
    gateway.neuron.then(Stream([chunk(content=""), chunk(content="cut off")]))
    response = gateway.http.post("/v1/messages", json=request())
    assert response.status_code == 502 and envelope(response)["type"] == "api_error"


def test_a_cold_load_failure_after_the_stream_started_is_an_error_event(
    make_gateway: Callable[..., Gateway[anthropic.Anthropic]],
) -> None:
    gateway = make_gateway(catalogue=("scripted", "cold-model"))
    gateway.neuron.then(openai_error(503, "no room", "model_overloaded", "overloaded_error"))
    events = post_stream(gateway.http, request(model="cold-model"))
    assert [name for name, _ in events if name != "ping"] == ["error"]  # message_start waits for the count
    assert events[-1][1]["error"]["type"] == "overloaded_error"


def test_the_gateways_keys_guard_the_dialect_and_refuse_in_its_envelope(
    make_gateway: Callable[..., Gateway[anthropic.Anthropic]],
) -> None:
    gateway = make_gateway(auth=AuthSection(require_api_key=True, api_keys=[key_digest("right")]))
    with pytest.raises(anthropic.AuthenticationError) as caught:
        gateway.client.messages.create(**request())
    refusal = {"type": "authentication_error", "message": "missing or unknown API key"}
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"] == refusal
    gateway.neuron.then(reply(chunk(content="in")))
    response = gateway.http.post("/v1/messages", json=request(), headers={"x-api-key": "right"})
    assert response.status_code == 200
