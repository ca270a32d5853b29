"""What Claude Code's gateway-compatibility guide asks of an endpoint beyond ``/v1/messages``.

Its warm-up probe and telemetry are answered quietly instead of 404 noise; retryable failures
carry ``retry-after`` in whole seconds and ``x-should-retry``; ``message_start`` carries the real
prompt count (what ``count_tokens`` says), since Claude Code decides when to compact from it;
error texts it matches on reach it verbatim; and the listing it reads with
``CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1`` names the gateway's ``claude…`` aliases.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import anthropic
import pytest
from starlette.testclient import TestClient

from cortex_kernel.config.schema import AuthSection
from tests.anthropic.conftest import gateway_app
from tests.anthropic.headers import ANTHROPIC
from tests.anthropic.scripted import Json, ScriptedNeuron, chunk, openai_error, reply
from tests.anthropic.sse import USER_HI, post_stream, request
from tests.dialect_gateway import Gateway


def test_the_warm_up_probe_is_answered_without_a_body(gateway: Gateway[anthropic.Anthropic]) -> None:
    head = gateway.http.head("/api/hello")
    assert head.status_code == 200 and head.content == b""
    get = gateway.http.get("/api/hello")
    assert get.status_code == 200


def test_telemetry_batches_are_accepted_and_dropped(gateway: Gateway[anthropic.Anthropic]) -> None:
    batch = {"events": [{"event_type": "ClaudeCodeInternalEvent", "event_data": {"name": "tengu_init"}}]}
    response = gateway.http.post("/api/event_logging/batch", json=batch)
    assert response.status_code == 204 and response.content == b""
    assert not gateway.neuron.received  # nothing reached a neuron


def test_the_probe_and_telemetry_need_no_client_key(neuron: ScriptedNeuron) -> None:
    # Claude Code may probe and send telemetry before (or without) the gateway key.
    key = "sha256:" + hashlib.sha256(b"client-key").hexdigest()
    app = gateway_app(neuron.url, auth=AuthSection(require_api_key=True, api_keys=[key]))
    with TestClient(app) as http:
        assert http.head("/api/hello").status_code == 200
        assert http.post("/api/event_logging/batch", json={"events": []}).status_code == 204
        assert http.post("/v1/messages", json=request()).status_code == 401


@pytest.mark.parametrize(
    ("scripted", "status"),
    [
        (
            openai_error(
                429, "slow down", "rate_limit_exceeded", "rate_limit_error", None, **{"retry-after": "2.4"}
            ),
            429,
        ),
        (
            openai_error(
                503, "queue full", "model_overloaded", "overloaded_error", None, **{"retry-after": "3"}
            ),
            529,
        ),
        (openai_error(503, "queue full", "model_overloaded", "overloaded_error"), 529),
        (openai_error(429, "slow down", "rate_limit_exceeded", "rate_limit_error"), 429),
    ],
)
def test_retryable_failures_say_when_and_whether_to_retry(
    gateway: Gateway[anthropic.Anthropic], scripted: Json, status: int
) -> None:
    gateway.neuron.then(scripted)
    response = gateway.http.post("/v1/messages", json=request(), headers=ANTHROPIC)
    assert response.status_code == status
    assert response.headers["x-should-retry"] == "true"
    assert response.headers["retry-after"].isdigit() and int(response.headers["retry-after"]) >= 1


def test_a_client_mistake_is_not_retried(gateway: Gateway[anthropic.Anthropic]) -> None:
    gateway.neuron.then(openai_error(400, "bad value", "invalid_value"))
    response = gateway.http.post("/v1/messages", json=request(), headers=ANTHROPIC)
    assert response.status_code == 400 and response.headers["x-should-retry"] == "false"


def test_the_sdk_retries_an_overloaded_reply_then_succeeds(gateway: Gateway[anthropic.Anthropic]) -> None:
    gateway.neuron.then(
        openai_error(503, "queue full", "model_overloaded", "overloaded_error", None, **{"retry-after": "1"}),
        reply(chunk(content="second time")),
    )
    retrying = gateway.client.with_options(max_retries=1)
    message = retrying.messages.create(**request())
    assert message.content[0].text == "second time"


def test_message_start_carries_the_count_tokens_count(gateway: Gateway[anthropic.Anthropic]) -> None:
    # A short prompt far inside the context: the exchange would not need to count it for the
    # output budget, but Claude Code reads input_tokens from message_start.
    counted = gateway.client.messages.count_tokens(model="scripted", messages=USER_HI)
    gateway.neuron.then(reply(chunk(content="hi"), prompt=counted.input_tokens))
    events = post_stream(gateway.http, request())
    start = next(data for name, data in events if name == "message_start")
    assert start["message"]["usage"]["input_tokens"] == counted.input_tokens > 0


def test_message_start_of_a_cold_model_carries_the_count_too(
    make_gateway: Callable[..., Gateway[anthropic.Anthropic]],
) -> None:
    gateway = make_gateway(catalogue=("scripted", "cold-model"))
    counted = gateway.client.messages.count_tokens(model="cold-model", messages=USER_HI)
    gateway.neuron.load_delay_s = 0.3
    gateway.neuron.then(reply(chunk(content="warm now")))
    events = post_stream(gateway.http, request(model="cold-model"))
    names = [name for name, _ in events if name != "ping"]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    start = events[[name for name, _ in events].index("message_start")][1]
    assert start["message"]["usage"]["input_tokens"] == counted.input_tokens > 0


def test_the_sdk_sees_the_same_count_in_its_stream(gateway: Gateway[anthropic.Anthropic]) -> None:
    counted = gateway.client.messages.count_tokens(model="scripted", messages=USER_HI)
    gateway.neuron.then(reply(chunk(content="hi"), prompt=counted.input_tokens))
    with gateway.client.messages.stream(**request()) as stream:
        first = next(iter(stream))
        assert first.type == "message_start"
        assert first.message.usage.input_tokens == counted.input_tokens
        final = stream.get_final_message()
    assert final.usage.input_tokens == counted.input_tokens


@pytest.mark.parametrize("status", [400, 422])
def test_a_rejected_capability_reaches_claude_code_verbatim(
    gateway: Gateway[anthropic.Anthropic], status: int
) -> None:
    text = "tools.0: Input tag 'advisor_20260301' found using 'type' does not match any of the expected tags"
    gateway.neuron.then(openai_error(status, text, "invalid_value"))
    with pytest.raises(anthropic.BadRequestError) as caught:
        gateway.client.messages.create(**request())
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"] == {"type": "invalid_request_error", "message": text}


def test_prompt_too_long_is_the_apis_own_wording(gateway: Gateway[anthropic.Anthropic]) -> None:
    message = "This model's maximum context length is 4096 tokens, but the prompt has 5000 tokens."
    counts = {"prompt_tokens": 5000, "context_length": 4096}  # the neuron's structured fields
    gateway.neuron.then(openai_error(400, message, "context_length_exceeded", fields=counts))
    with pytest.raises(anthropic.BadRequestError) as caught:
        gateway.client.messages.create(**request())
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["message"] == "prompt is too long: 5000 tokens > 4095 maximum"


def test_model_discovery_lists_the_claude_aliases_with_display_names(
    make_gateway: Callable[..., Gateway[anthropic.Anthropic]],
) -> None:
    gateway = make_gateway(
        catalogue=("scripted", "cold-model"),
        aliases={"claude-sonnet-gateway": "scripted", "claude-haiku-gateway": "cold-model"},
    )
    # What Claude Code sends with CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1 (the SDK's
    # models.list with limit=1000), then its own filter: ids containing "claude" or "anthropic".
    listed = gateway.client.models.list(limit=1000)
    discovered = {m.id: m.display_name for m in listed.data if "claude" in m.id.lower()}
    assert discovered == {
        "claude-haiku-gateway": "claude-haiku-gateway",
        "claude-sonnet-gateway": "claude-sonnet-gateway",
    }
    assert listed.has_more is False
    raw = gateway.http.get("/v1/models?limit=1000", headers=ANTHROPIC, follow_redirects=False)
    assert raw.status_code == 200  # a redirect counts as a failure for Claude Code
    # A plain listing (no anthropic-version) carries display_name too.
    plain = gateway.http.get("/v1/models?limit=1000").json()
    assert {e["id"]: e["display_name"] for e in plain["data"]}[
        "claude-sonnet-gateway"
    ] == "claude-sonnet-gateway"
