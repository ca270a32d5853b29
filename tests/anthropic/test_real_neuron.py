"""The official SDK against a real ``cortex-kernel serve`` in front of a real neuron running the
tiny synthetic chat model (random weights: the words are noise, the protocol is not)."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest
from anthropic.types import MessageParam

from tests.anthropic.conftest import TINY_CONTEXT

pytestmark = pytest.mark.slow

HI: list[MessageParam] = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def client(real_fleet: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=real_fleet, auth_token="any-token", max_retries=0, timeout=120) as sdk:
        yield sdk


def test_streamed_and_plain_replies_from_a_cold_then_warm_model(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="tiny-chat", max_tokens=12, messages=HI) as stream:
        kinds = [event.type for event in stream]
        message = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0 and 1 <= message.usage.output_tokens <= 12

    plain = client.messages.create(model="tiny-chat", max_tokens=8, messages=HI, system="Be brief.")
    assert plain.id.startswith("msg_") and plain.model == "tiny-chat"
    assert plain.stop_reason in ("end_turn", "max_tokens")
    # Random weights may emit the <think> marker too; without tools there is no tool_use.
    assert all(block.type in ("text", "thinking") for block in plain.content)


def test_count_tokens_is_the_models_own_count(client: anthropic.Anthropic) -> None:
    short = client.messages.count_tokens(model="tiny-chat", messages=HI)
    longer = client.messages.count_tokens(model="claude-haiku", messages=HI, system="A system prompt, too.")
    assert 0 < short.input_tokens < longer.input_tokens
    reply = client.messages.create(model="tiny-chat", max_tokens=4, messages=HI)
    # Same prompt, same template, same count; Anthropic's input_tokens leave out what the prefix
    # cache served, which cache_read_input_tokens reports.
    assert reply.usage.input_tokens + (reply.usage.cache_read_input_tokens or 0) == short.input_tokens


def test_thinking_turns_the_templates_reasoning_on(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="tiny-chat", max_tokens=10, messages=HI, thinking={"type": "enabled", "budget_tokens": 1024}
    )
    # The template opens <think>, so everything this random model writes is reasoning.
    assert message.content and message.content[0].type == "thinking"
    assert message.content[0].signature == ""


def test_a_stop_sequence_is_matched_and_reported(client: anthropic.Anthropic) -> None:
    # Greedy decoding makes the random model's reply the same every run (mostly newlines).
    stops = [" ", "\n"]
    message = client.messages.create(
        model="tiny-chat", max_tokens=64, messages=HI, stop_sequences=stops, extra_body={"temperature": 0}
    )
    assert message.stop_reason == "stop_sequence" and message.stop_sequence in stops
    text = "".join(block.text for block in message.content if block.type == "text")
    assert not any(stop in text for stop in stops)


def test_max_tokens_beyond_the_context_is_clamped_not_refused(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="tiny-short", max_tokens=32000, messages=HI) as stream:
        message = stream.get_final_message()
    assert message.stop_reason in ("end_turn", "model_context_window_exceeded")
    assert message.usage.input_tokens + message.usage.output_tokens <= TINY_CONTEXT


def test_a_prompt_over_the_context_is_prompt_is_too_long(client: anthropic.Anthropic) -> None:
    long: list[MessageParam] = [{"role": "user", "content": "word " * 600}]
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="tiny-short", max_tokens=16, messages=long)
    assert isinstance(caught.value.body, dict)
    message = caught.value.body["error"]["message"]
    assert message.startswith("prompt is too long: ") and message.endswith(f"> {TINY_CONTEXT - 1} maximum")


def test_the_model_listing_in_the_anthropic_shape(client: anthropic.Anthropic) -> None:
    ids = [model.id for model in client.models.list()]
    assert {"tiny-chat", "tiny-short", "claude-haiku"} <= set(ids)
