"""``POST /v1/responses`` through the real gateway, against the scripted neuron double, driven by
the official ``openai`` SDK (``responses.create``, ``responses.stream``, ``responses.parse``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pydantic
import pytest
from openai.lib.streaming.responses import ResponseStreamEvent
from openai.types.responses import (
    Response,
    ResponseCustomToolCall,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
)

from tests.anthropic.scripted import KEEPALIVE, Json, Stream, chunk, openai_error, reply, tool_call
from tests.dialect_gateway import Gateway
from tests.responses.sse import documented_order, envelope, post_stream
from tests.responses.tools import APPLY_PATCH, GITHUB, WEATHER


def create(
    gateway: Gateway[openai.OpenAI], stream: bool, **fields: Any
) -> tuple[Response, list[ResponseStreamEvent[Any]] | None]:
    """One request, streamed (folded by the SDK's own accumulator) or not; also the event types."""
    body = {"model": "scripted", "input": "hi", **fields}
    if not stream:
        return gateway.client.responses.create(**body), None
    with gateway.client.responses.stream(**body) as events:
        seen = list(events)
        final = events.get_final_response()
    numbers = [event.sequence_number for event in seen]
    assert numbers == list(range(len(seen)))
    documented_order([event.type for event in seen])
    return final, seen


@pytest.mark.parametrize("stream", [False, True])
def test_a_text_reply_with_usage(gateway: Gateway[openai.OpenAI], stream: bool) -> None:
    gateway.neuron.then(
        reply(chunk(content="Hello"), chunk(content=", world"), prompt=12, completion=3, cached=4)
    )
    response, _ = create(gateway, stream, instructions="Be brief.", temperature=0.5, metadata={"k": "v"})
    assert (
        response.id.startswith("resp_") and response.object == "response" and response.status == "completed"
    )
    assert response.model == "scripted" and response.output_text == "Hello, world"
    assert [item.type for item in response.output] == ["message"]
    assert isinstance(response.output[0], ResponseOutputMessage)
    assert response.output[0].role == "assistant" and response.output[0].status == "completed"
    usage = response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (12, 3, 15)
    assert usage.input_tokens_details.cached_tokens == 4 and usage.output_tokens_details.reasoning_tokens == 0
    assert (
        response.instructions == "Be brief."
        and response.metadata == {"k": "v"}
        and response.temperature == 0.5
    )
    sent = gateway.neuron.last
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert sent["stream"] is True and sent["temperature"] == 0.5 and "max_completion_tokens" not in sent


def test_the_stream_follows_the_documented_sequence_with_keepalives(gateway: Gateway[openai.OpenAI]) -> None:
    gateway.neuron.then(
        reply(KEEPALIVE, 0.3, chunk(reasoning="Let me"), chunk(reasoning=" see."), chunk(content="Yes."))
    )
    events, raw = post_stream(
        gateway.http, {"model": "scripted", "input": "hi", "reasoning": {"effort": "high"}}
    )
    assert ": keep-alive" in raw  # the 0.3 s silence is longer than the test's keep-alive period
    assert [event["type"] for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["reasoning", "message"]
    assert final["output"][0]["content"] == [{"type": "reasoning_text", "text": "Let me see."}]
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] == 2
    sent = gateway.neuron.last
    assert sent["chat_template_kwargs"] == {"enable_thinking": True} and sent["reasoning_effort"] == "high"


def test_a_requested_reasoning_summary_streams_as_summary_parts(gateway: Gateway[openai.OpenAI]) -> None:
    gateway.neuron.then(reply(chunk(reasoning="Think"), chunk(reasoning="ing."), chunk(content="Done.")))
    response, events = create(gateway, True, reasoning={"effort": "low", "summary": "auto"})
    assert events is not None
    kinds = [event.type for event in events]
    assert kinds[2:9] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
    ]
    reasoning = response.output[0]
    assert reasoning.type == "reasoning" and [part.text for part in reasoning.summary] == ["Thinking."]
    assert reasoning.content is not None
    assert [part.text for part in reasoning.content] == ["Thinking."]
    assert response.output_text == "Done."


def test_reasoning_effort_none_switches_thinking_off(gateway: Gateway[openai.OpenAI]) -> None:
    create(gateway, False, reasoning={"effort": "none"})
    assert gateway.neuron.last["chat_template_kwargs"] == {"enable_thinking": False}


@pytest.mark.parametrize("stream", [False, True])
def test_a_function_tool_round_trip(gateway: Gateway[openai.OpenAI], stream: bool) -> None:
    gateway.neuron.then(
        reply(
            chunk(tool_calls=[tool_call(0, id="call_a", name="get_weather", arguments="")]),
            chunk(tool_calls=[tool_call(0, arguments='{"city": ')]),
            chunk(tool_calls=[tool_call(0, arguments='"Paris"}')]),
            finish="tool_calls",
        )
    )
    first, events = create(gateway, stream, tools=[WEATHER, {"type": "web_search"}], tool_choice="required")
    sent = gateway.neuron.last
    assert [tool["function"]["name"] for tool in sent["tools"]] == ["get_weather"]  # web_search dropped
    assert sent["tool_choice"] == "required"
    [call] = first.output
    assert call.type == "function_call" and call.call_id == "call_a" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"} and call.namespace is None
    if events is not None:
        deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
        assert "".join(deltas) == call.arguments
        done = next(e for e in events if e.type == "response.function_call_arguments.done")
        assert done.arguments == call.arguments
    gateway.neuron.then(reply(chunk(content="Sunny in Paris.")))
    second, _ = create(
        gateway,
        stream,
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "weather in Paris?"},
            *[item.model_dump(exclude_none=True) for item in first.output],
            {"type": "function_call_output", "call_id": "call_a", "output": "Sunny"},
        ],
    )
    assert second.output_text == "Sunny in Paris."
    messages = gateway.neuron.last["messages"]
    assert messages[1]["role"] == "assistant"
    assert messages[1]["tool_calls"] == [
        {"type": "function", "id": "call_a", "function": {"name": "get_weather", "arguments": call.arguments}}
    ]
    assert messages[2] == {"role": "tool", "tool_call_id": "call_a", "content": "Sunny"}


@pytest.mark.parametrize("stream", [False, True])
def test_a_namespace_tool_is_flattened_for_the_model_and_restored(
    gateway: Gateway[openai.OpenAI], stream: bool
) -> None:
    gateway.neuron.then(
        reply(
            chunk(tool_calls=[tool_call(0, id="call_n", name="mcp__github__create_issue", arguments="{}")]),
            finish="tool_calls",
        )
    )
    response, _ = create(gateway, stream, tools=[WEATHER, GITHUB])
    names = [tool["function"]["name"] for tool in gateway.neuron.last["tools"]]
    assert names == ["get_weather", "mcp__github__create_issue", "mcp__github__get_weather"]
    [call] = response.output
    assert isinstance(call, ResponseFunctionToolCall)
    assert (call.type, call.name, call.namespace, call.call_id) == (
        "function_call",
        "create_issue",
        "mcp__github__",
        "call_n",
    )
    create(
        gateway,
        stream,
        tools=[WEATHER, GITHUB],
        input=[
            *[item.model_dump(exclude_none=True) for item in response.output],
            {"type": "function_call_output", "call_id": "call_n", "output": "#12"},
        ],
    )
    history = gateway.neuron.last["messages"][0]
    assert history["tool_calls"][0]["function"]["name"] == "mcp__github__create_issue"


@pytest.mark.parametrize("stream", [False, True])
def test_a_custom_tool_is_a_one_string_function_and_comes_back_as_a_custom_call(
    gateway: Gateway[openai.OpenAI], stream: bool
) -> None:
    patch = "*** Begin Patch\n*** End Patch"
    arguments = json.dumps({"input": patch})
    gateway.neuron.then(
        reply(
            chunk(tool_calls=[tool_call(0, id="call_p", name="apply_patch", arguments=arguments[:10])]),
            chunk(tool_calls=[tool_call(0, arguments=arguments[10:])]),
            finish="tool_calls",
        )
    )
    response, events = create(gateway, stream, tools=[APPLY_PATCH])
    [tool] = gateway.neuron.last["tools"]
    assert tool["function"]["parameters"]["required"] == ["input"]
    assert "start: /.+/" in tool["function"]["description"]
    [call] = response.output
    assert isinstance(call, ResponseCustomToolCall)
    assert (call.type, call.name, call.input, call.call_id) == (
        "custom_tool_call",
        "apply_patch",
        patch,
        "call_p",
    )
    if events is not None:
        kinds = [e.type for e in events]
        assert "response.custom_tool_call_input.done" in kinds
        assert "response.function_call_arguments.delta" not in kinds
    create(
        gateway,
        stream,
        tools=[APPLY_PATCH],
        input=[
            call.model_dump(exclude_none=True),
            {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Done!"},
        ],
    )
    messages = gateway.neuron.last["messages"]
    assert json.loads(messages[0]["tool_calls"][0]["function"]["arguments"]) == {"input": patch}
    assert messages[1] == {"role": "tool", "tool_call_id": "call_p", "content": "Done!"}


@pytest.mark.parametrize("stream", [False, True])
def test_previous_response_id_chains_the_conversation(gateway: Gateway[openai.OpenAI], stream: bool) -> None:
    gateway.neuron.then(reply(chunk(content="I am Ada.")))
    first, _ = create(gateway, stream, input="Who are you?", instructions="First rules.")
    gateway.neuron.then(reply(chunk(content="Ada, still.")))
    second, _ = create(gateway, stream, input="Again?", previous_response_id=first.id)
    assert second.previous_response_id == first.id and second.output_text == "Ada, still."
    assert gateway.neuron.last["messages"] == [
        {"role": "user", "content": "Who are you?"},
        {"role": "assistant", "content": "I am Ada."},
        {"role": "user", "content": "Again?"},
    ]  # instructions are per request, never inherited
    create(gateway, stream, input="Third", previous_response_id=second.id)
    assert len(gateway.neuron.last["messages"]) == 5


def test_stored_responses_can_be_retrieved_and_deleted(gateway: Gateway[openai.OpenAI]) -> None:
    response, _ = create(gateway, False)
    fetched = gateway.client.responses.retrieve(response.id)
    assert fetched.id == response.id and fetched.output_text == response.output_text
    gateway.client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        gateway.client.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError) as caught:
        create(gateway, False, previous_response_id=response.id)
    assert caught.value.code == "previous_response_not_found"


def test_store_false_is_stateless(gateway: Gateway[openai.OpenAI]) -> None:
    response, _ = create(gateway, False, store=False)
    assert response.store is False  # type: ignore[attr-defined]  # an extra field the SDK model keeps
    assert gateway.http.get(f"/v1/responses/{response.id}").status_code == 404
    with pytest.raises(openai.BadRequestError) as caught:
        create(gateway, False, previous_response_id=response.id)
    assert caught.value.code == "previous_response_not_found"
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "previous_response_id"


class Answer(pydantic.BaseModel):
    city: str
    degrees: int


def test_structured_output_with_json_schema(gateway: Gateway[openai.OpenAI]) -> None:
    gateway.neuron.then(reply(chunk(content='{"city": "Oslo", '), chunk(content='"degrees": 3}')))
    parsed = gateway.client.responses.parse(model="scripted", input="weather?", text_format=Answer)
    assert parsed.output_parsed == Answer(city="Oslo", degrees=3)
    sent = gateway.neuron.last["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"]["required"] == ["city", "degrees"]
    create(gateway, False, text={"format": {"type": "json_object"}})
    assert gateway.neuron.last["response_format"] == {"type": "json_object"}


def test_max_output_tokens_is_clamped_to_the_context_and_a_cut_reply_is_incomplete(
    gateway: Gateway[openai.OpenAI],
) -> None:
    gateway.neuron.count_replies.append(Json({"prompt_tokens": 4000, "context_length": 4096}))
    gateway.neuron.then(reply(chunk(content="cut"), finish="length"))
    response, _ = create(gateway, False, max_output_tokens=4000)
    assert gateway.neuron.last["max_completion_tokens"] == 96
    assert response.incomplete_details is not None
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    gateway.neuron.then(reply(chunk(content="cut"), finish="length"))
    events, _ = post_stream(gateway.http, {"model": "scripted", "input": "hi", "max_output_tokens": 16})
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_an_input_over_the_context_says_both_numbers(gateway: Gateway[openai.OpenAI]) -> None:
    gateway.neuron.count_replies.append(Json({"prompt_tokens": 5000, "context_length": 4096}))
    with pytest.raises(openai.BadRequestError) as caught:
        create(gateway, False, max_output_tokens=4000)
    assert caught.value.code == "context_length_exceeded"
    assert "5000" in caught.value.message and "4096" in caught.value.message
    assert not gateway.neuron.bodies()
    message = "This model's maximum context length is 4096 tokens, but the prompt has 4500 tokens."
    gateway.neuron.then(openai_error(400, message, "context_length_exceeded"))
    response = gateway.http.post("/v1/responses", json={"model": "scripted", "input": "hi"})
    assert response.status_code == 400
    error = envelope(response)
    assert (
        error["code"] == "context_length_exceeded"
        and "4500" in error["message"]
        and "4096" in error["message"]
    )


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (
            b'data: {"error": {"message": "out of memory", "type": "overloaded_error", "code": null}}\n\n',
            "rate_limit_exceeded",
        ),
        (b'data: {"error": {"message": "boom", "type": "api_error", "code": null}}\n\n', "server_error"),
        (
            b'data: {"error": {"message": "This model\'s maximum context length is 64 tokens, '
            b'but the prompt has 70 tokens.", "type": "invalid_request_error", '
            b'"code": "context_length_exceeded"}}\n\n',
            "context_length_exceeded",
        ),
    ],
)
def test_a_failure_mid_stream_is_response_failed_with_a_code(
    gateway: Gateway[openai.OpenAI], failure: bytes, code: str
) -> None:
    gateway.neuron.then(Stream([chunk(content=""), chunk(content="partial"), failure]))
    events, _ = post_stream(gateway.http, {"model": "scripted", "input": "hi"})
    documented_order([event["type"] for event in events])
    last = events[-1]
    assert last["type"] == "response.failed" and last["response"]["status"] == "failed"
    assert last["response"]["error"]["code"] == code
    assert last["sequence_number"] == events[-2]["sequence_number"] + 1


def test_a_stream_cut_without_a_finish_fails_and_a_plain_request_is_502(
    gateway: Gateway[openai.OpenAI],
) -> None:
    gateway.neuron.then(Stream([chunk(content=""), chunk(content="cut off")]))
    events, _ = post_stream(gateway.http, {"model": "scripted", "input": "hi"})
    assert (
        events[-1]["type"] == "response.failed" and events[-1]["response"]["error"]["code"] == "server_error"
    )
    gateway.neuron.then(Stream([chunk(content=""), chunk(content="cut off")]))
    response = gateway.http.post("/v1/responses", json={"model": "scripted", "input": "hi"})
    assert response.status_code == 502 and envelope(response)["type"] == "api_error"


def test_a_cold_load_refusal_after_the_stream_started_is_rate_limit_exceeded(
    make_gateway: Callable[..., Gateway[openai.OpenAI]],
) -> None:
    gateway = make_gateway(catalogue=("scripted", "cold-model"))
    gateway.neuron.then(
        openai_error(503, "no room", "model_overloaded", "overloaded_error", None, **{"retry-after": "3"})
    )
    events, _ = post_stream(gateway.http, {"model": "cold-model", "input": "hi"})
    assert [event["type"] for event in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    error = events[-1]["response"]["error"]
    assert error["code"] == "rate_limit_exceeded" and "try again in 3s" in error["message"]


def test_errors_are_in_openais_envelope_with_their_status(
    make_gateway: Callable[..., Gateway[openai.OpenAI]],
) -> None:
    gateway = make_gateway()
    with pytest.raises(openai.NotFoundError) as caught:
        gateway.client.responses.create(model="nope", input="hi")
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "model_not_found"
    response = gateway.http.post("/v1/responses", json={"model": "embedder", "input": "hi"})
    assert response.status_code == 400 and "embedding" in envelope(response)["message"]
    response = gateway.http.post("/v1/responses", json={"model": "scripted", "input": [{"type": "message"}]})
    assert response.status_code == 400 and envelope(response)["param"].startswith("input[0]")
    response = gateway.http.post("/v1/responses", json={"model": "scripted", "input": [], "temperature": 9})
    assert response.status_code == 400 and envelope(response)["param"] == "temperature"
    gateway.neuron.then(
        openai_error(503, "busy", "model_overloaded", "overloaded_error", None, **{"retry-after": "2"})
    )
    response = gateway.http.post("/v1/responses", json={"model": "scripted", "input": "hi"})
    assert response.status_code == 503 and response.headers["retry-after"] == "2"
    assert envelope(response)["type"] == "overloaded_error"


def test_an_image_and_developer_messages_translate(gateway: Gateway[openai.OpenAI]) -> None:
    create(
        gateway,
        False,
        instructions="Rules.",
        input=[
            {"role": "developer", "content": "Dev note."},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "what is this?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"},
                ],
            },
        ],
    )
    messages = gateway.neuron.last["messages"]
    assert messages[0] == {"role": "system", "content": "Rules.\n\nDev note."}
    assert messages[1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA"},
    }
