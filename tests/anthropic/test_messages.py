"""``POST /v1/messages`` through the real gateway, against a scripted neuron, driven by the SDK."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import pytest
from anthropic.types import TextBlock, ThinkingBlock, ToolUseBlock

from tests.anthropic.scripted import (
    KEEPALIVE,
    Json,
    chunk,
    reply,
    text_reply,
    tool_call,
)
from tests.anthropic.sse import USER_HI, frames, post_stream, request
from tests.dialect_gateway import Gateway

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def create(gateway: Gateway[anthropic.Anthropic], stream: bool, **fields: Any) -> anthropic.types.Message:
    """One request, streamed (folded by the SDK's own accumulator) or not."""
    body = request(**fields)
    if not stream:
        message = gateway.client.messages.create(**body)
        assert isinstance(message, anthropic.types.Message)
        return message
    with gateway.client.messages.stream(**body) as events:
        for _ in events:
            pass
        return events.get_final_message()


@pytest.mark.parametrize("stream", [False, True])
def test_a_text_reply(gateway: Gateway[anthropic.Anthropic], stream: bool) -> None:
    gateway.neuron.then(reply(chunk(content="Hello"), chunk(content=", world"), prompt=12, completion=3))
    message = create(gateway, stream)
    assert message.id.startswith("msg_") and message.model == "scripted" and message.role == "assistant"
    assert [block.type for block in message.content] == ["text"]
    assert isinstance(message.content[0], TextBlock)
    assert message.content[0].text == "Hello, world"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens == 12 and message.usage.output_tokens == 3
    sent = gateway.neuron.last
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["max_completion_tokens"] == 64


def test_every_frame_has_an_event_and_a_data_line_in_the_documented_order(
    gateway: Gateway[anthropic.Anthropic],
) -> None:
    gateway.neuron.then(
        reply(
            KEEPALIVE,
            chunk(reasoning="Let me see."),
            KEEPALIVE,
            chunk(content="Yes."),
            chunk(content=" Done."),
        )
    )
    events = post_stream(gateway.http, request(thinking={"type": "enabled", "budget_tokens": 1024}))
    names = [name for name, _ in events if name != "ping"]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["output_tokens"] >= 1
    blocks = [data for name, data in events if name == "content_block_start"]
    assert [b["index"] for b in blocks] == [0, 1]
    assert blocks[0]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert blocks[1]["content_block"] == {"type": "text", "text": ""}
    delta = next(data for name, data in events if name == "message_delta")
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}


def test_the_sdk_raw_event_iteration_accepts_the_stream(gateway: Gateway[anthropic.Anthropic]) -> None:
    gateway.neuron.then(text_reply("raw"))
    stream = gateway.client.messages.create(**request(), stream=True)
    types = [event.type for event in stream]
    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert "content_block_delta" in types


def test_the_query_string_auth_headers_and_betas_are_accepted_and_ignored(
    gateway: Gateway[anthropic.Anthropic],
) -> None:
    response = gateway.http.post(
        "/v1/messages?beta=true",
        json={**request(), "a_field_from_the_future": {"x": 1}},
        headers={
            "x-api-key": "sk-ant-anything",
            "authorization": "Bearer another-token",
            "anthropic-version": "2023-06-01",
            "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,made-up-2099-01-01",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "message"
    assert response.headers["request-id"].startswith("req_")


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_tool_calls_and_their_results_round_trip(
    gateway: Gateway[anthropic.Anthropic], stream: bool
) -> None:
    gateway.neuron.then(
        reply(
            chunk(content="Checking both."),
            chunk(tool_calls=[tool_call(0, id="call_a", name="get_weather", arguments="")]),
            chunk(tool_calls=[tool_call(0, arguments='{"city": ')]),
            chunk(tool_calls=[tool_call(0, arguments='"Paris"}')]),
            chunk(tool_calls=[tool_call(1, id="call_b", name="get_weather", arguments='{"city": "Rome"}')]),
            finish="tool_calls",
        )
    )
    message = create(gateway, stream, tools=[WEATHER_TOOL])
    assert [block.type for block in message.content] == ["text", "tool_use", "tool_use"]
    first, second = message.content[1], message.content[2]
    assert isinstance(first, ToolUseBlock) and isinstance(second, ToolUseBlock)
    assert (first.id, first.name, first.input) == ("call_a", "get_weather", {"city": "Paris"})
    assert (second.id, second.input) == ("call_b", {"city": "Rome"})
    assert message.stop_reason == "tool_use"
    assert gateway.neuron.last["tools"][0]["function"]["parameters"] == WEATHER_TOOL["input_schema"]

    # The next turn: the SDK's own echo of the reply, then both results.
    gateway.neuron.then(text_reply("Sunny and rainy."))
    follow_up = create(
        gateway,
        stream,
        tools=[WEATHER_TOOL],
        messages=[
            *USER_HI,
            message.to_param(),
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_a", "content": "Sunny"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_b",
                        "content": [{"type": "text", "text": "Rain"}],
                    },
                ],
            },
        ],
    )
    assert isinstance(follow_up.content[0], TextBlock)
    assert follow_up.content[0].text == "Sunny and rainy."
    sent = gateway.neuron.last["messages"]
    assert sent[1]["role"] == "assistant" and sent[1]["content"] == "Checking both."
    assert [(c["id"], json.loads(c["function"]["arguments"])) for c in sent[1]["tool_calls"]] == [
        ("call_a", {"city": "Paris"}),
        ("call_b", {"city": "Rome"}),
    ]
    assert sent[2:] == [
        {"role": "tool", "tool_call_id": "call_a", "content": "Sunny"},
        {"role": "tool", "tool_call_id": "call_b", "content": "Rain"},
    ]


def test_tool_arguments_that_arrive_before_the_name_are_held_back(
    gateway: Gateway[anthropic.Anthropic],
) -> None:
    gateway.neuron.then(
        reply(
            chunk(tool_calls=[tool_call(0, arguments='{"city"')]),
            chunk(tool_calls=[tool_call(0, id="call_x", name="get_weather")]),
            chunk(tool_calls=[tool_call(0, arguments=': "Oslo"}')]),
            finish="stop",  # a forced tool call may finish with "stop": still tool_use
        )
    )
    events = post_stream(gateway.http, request(tools=[WEATHER_TOOL]))
    names = [name for name, _ in events if name != "ping"]
    assert names[:2] == ["message_start", "content_block_start"]
    partial = "".join(data["delta"]["partial_json"] for name, data in events if name == "content_block_delta")
    assert json.loads(partial) == {"city": "Oslo"}
    assert (
        next(data for name, data in events if name == "message_delta")["delta"]["stop_reason"] == "tool_use"
    )


def test_a_tool_call_without_an_id_gets_one(gateway: Gateway[anthropic.Anthropic]) -> None:
    gateway.neuron.then(
        reply(chunk(tool_calls=[tool_call(0, name="get_weather", arguments="{}")]), finish="tool_calls")
    )
    message = create(gateway, False, tools=[WEATHER_TOOL])
    assert isinstance(message.content[0], ToolUseBlock)
    assert message.content[0].id.startswith("toolu_") and message.content[0].input == {}


def test_a_tool_result_with_an_image_moves_the_image_to_a_user_message(
    gateway: Gateway[anthropic.Anthropic],
) -> None:
    png = "iVBORw0KGgo="
    create(
        gateway,
        False,
        tools=[WEATHER_TOOL],
        messages=[
            *USER_HI,
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [
                            {"type": "text", "text": "Radar:"},
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "image/png", "data": png},
                            },
                        ],
                    }
                ],
            },
        ],
    )
    sent = gateway.neuron.last["messages"]
    assert sent[2]["role"] == "tool" and sent[2]["content"].startswith("Radar:\n\n[image")
    assert sent[3] == {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}],
    }


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_becomes_thinking_blocks(gateway: Gateway[anthropic.Anthropic], stream: bool) -> None:
    gateway.neuron.then(reply(chunk(reasoning="First, "), chunk(reasoning="think."), chunk(content="42")))
    message = create(gateway, stream, thinking={"type": "enabled", "budget_tokens": 2048})
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert isinstance(message.content[0], ThinkingBlock)
    assert message.content[0].thinking == "First, think." and message.content[0].signature == ""
    assert gateway.neuron.last["chat_template_kwargs"]["enable_thinking"] is True


def test_thinking_with_display_omitted_drops_the_reasoning(gateway: Gateway[anthropic.Anthropic]) -> None:
    gateway.neuron.then(reply(chunk(reasoning="hidden"), chunk(content="42")))
    message = create(gateway, False, thinking={"type": "adaptive", "display": "omitted"})
    assert [block.type for block in message.content] == ["text"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_matched_stop_sequence_is_reported_and_ends_generation(
    gateway: Gateway[anthropic.Anthropic], stream: bool
) -> None:
    gateway.neuron.then(
        reply(
            chunk(content="Hello wor"),
            chunk(content="ld EN"),
            chunk(content="D and more"),
            5.0,  # the neuron would go on; the gateway must not wait for it
            chunk(content="never shown"),
            prompt=20,
            completion=9,
        )
    )
    message = create(gateway, stream, stop_sequences=["STOP", "END"])
    assert isinstance(message.content[0], TextBlock)
    assert message.content[0].text == "Hello world "
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "END"
    assert message.usage.input_tokens == len(json.dumps(gateway.neuron.last["messages"])) // 4 + 1
    assert message.usage.output_tokens >= 1
    assert gateway.neuron.bodies("/v1/count_tokens")  # counted up front: no usage chunk comes
    assert "stop" not in gateway.neuron.last
    assert gateway.neuron.wait_for_disconnects(1)  # the gateway hung up: generation stops


def test_text_that_only_looks_like_a_stop_sequence_is_released_at_the_end(
    gateway: Gateway[anthropic.Anthropic],
) -> None:
    gateway.neuron.then(reply(chunk(content="almost EN")))
    message = create(gateway, True, stop_sequences=["END"])
    assert isinstance(message.content[0], TextBlock)
    assert message.content[0].text == "almost EN" and message.stop_reason == "end_turn"


def test_max_tokens_is_clamped_to_what_the_context_leaves(gateway: Gateway[anthropic.Anthropic]) -> None:
    gateway.neuron.count_replies.append(Json({"prompt_tokens": 4000, "context_length": 4096}))
    gateway.neuron.then(reply(chunk(content="long"), finish="length", prompt=4000, completion=96))
    message = create(gateway, True, max_tokens=32000)  # the SDK refuses 32000 unstreamed
    assert gateway.neuron.last["max_completion_tokens"] == 96
    assert message.stop_reason == "model_context_window_exceeded"


def test_max_tokens_within_the_context_is_left_alone_and_length_is_max_tokens(
    gateway: Gateway[anthropic.Anthropic],
) -> None:
    gateway.neuron.then(reply(chunk(content="cut"), finish="length"))
    message = create(gateway, False, max_tokens=10)
    assert gateway.neuron.last["max_completion_tokens"] == 10
    assert message.stop_reason == "max_tokens"
    # A small unstreamed request needs no count (a streamed one is counted for message_start).
    assert not gateway.neuron.bodies("/v1/count_tokens")


def test_cached_prompt_tokens_are_not_counted_as_input(gateway: Gateway[anthropic.Anthropic]) -> None:
    gateway.neuron.then(reply(chunk(content="ok"), prompt=100, completion=2, cached=64))
    for stream in (False, True):
        gateway.neuron.then(reply(chunk(content="ok"), prompt=100, completion=2, cached=64))
        usage = create(gateway, stream).usage
        assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (36, 64, 2)


def test_max_tokens_zero_prewarms_without_generating(gateway: Gateway[anthropic.Anthropic]) -> None:
    message = create(gateway, False, max_tokens=0)
    assert message.content == [] and message.stop_reason == "max_tokens"
    assert message.usage.input_tokens > 0
    assert gateway.neuron.bodies("/v1/count_tokens") and not gateway.neuron.bodies()


def test_an_alias_is_resolved_for_the_neuron(
    make_gateway: Callable[..., Gateway[anthropic.Anthropic]],
) -> None:
    gateway = make_gateway(aliases={"claude-gateway-default": "scripted"})
    gateway.neuron.then(text_reply("via alias"))
    message = create(gateway, False, model="claude-gateway-default")
    assert isinstance(message.content[0], TextBlock)
    assert message.content[0].text == "via alias"
    assert gateway.neuron.last["model"] == "scripted"


def test_a_cold_model_streams_pings_while_it_loads(
    make_gateway: Callable[..., Gateway[anthropic.Anthropic]],
) -> None:
    gateway = make_gateway(catalogue=("scripted", "cold-model"))
    gateway.neuron.load_delay_s = 0.4
    gateway.neuron.then(reply(0.3, chunk(content="warm now")))
    events = post_stream(gateway.http, request(model="cold-model"))
    names = [name for name, _ in events]
    # message_start waits for the prompt count (it carries input_tokens); pings go out meanwhile.
    start, first_block = names.index("message_start"), names.index("content_block_start")
    assert set(names[:start]) <= {"ping"} and start < first_block
    assert names[:first_block].count("ping") >= 3  # pings every 50 ms over a 0.7 s silence
    assert names[-2:] == ["message_delta", "message_stop"]
    assert gateway.neuron.loads == ["cold-model"]


def test_a_cold_model_also_answers_a_non_streamed_request(
    make_gateway: Callable[..., Gateway[anthropic.Anthropic]],
) -> None:
    gateway = make_gateway(catalogue=("scripted", "cold-model"))
    gateway.neuron.then(text_reply("loaded"))
    block = create(gateway, False, model="cold-model").content[0]
    assert isinstance(block, TextBlock) and block.text == "loaded"


def test_frames_parse_rejects_a_frame_without_an_event_line() -> None:
    with pytest.raises(AssertionError):
        frames('data: {"type": "ping"}\n\n')
