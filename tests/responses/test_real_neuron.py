"""The official ``openai`` SDK's Responses client against a real ``cortex-kernel serve`` in front of
a real neuron running the tiny synthetic chat model (random weights: the words are noise, the
protocol is not). The gateway loads this plugin through its entry point, as a deployment does.

A random model cannot be made to call a tool, so the tool cases here send the history a tool
round trip leaves (a function, a namespaced and a custom call, and their outputs) and check that
the real chat template renders it and the exchange completes; the calls themselves are covered
against the scripted neuron in ``test_responses.py``."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pydantic
import pytest
from openai.types.responses import ResponseCompletedEvent, ResponseIncompleteEvent, ResponseInputItemParam

from tests.daemons import Daemon
from tests.responses.conftest import TINY_CONTEXT
from tests.responses.sse import documented_order
from tests.responses.tools import APPLY_PATCH, GITHUB, WEATHER

pytestmark = pytest.mark.slow


@pytest.fixture
def client(real_fleet: Daemon) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{real_fleet.url}/v1", api_key="any", max_retries=0, timeout=120) as sdk:
        yield sdk


def test_streamed_and_plain_responses_with_usage(client: openai.OpenAI) -> None:
    with client.responses.stream(model="tiny-chat", input="hello there", max_output_tokens=12) as stream:
        events = list(stream)
    last = events[-1]
    assert isinstance(last, (ResponseCompletedEvent, ResponseIncompleteEvent))
    final = last.response  # the SDK's get_final_response() wants completed, not incomplete
    documented_order([event.type for event in events])
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert final.status in ("completed", "incomplete") and final.model == "tiny-chat"
    usage = final.usage
    assert usage is not None
    assert usage.input_tokens > 0 and 1 <= usage.output_tokens <= 12
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens >= 0 and usage.output_tokens_details.reasoning_tokens >= 0

    plain = client.responses.create(
        model="tiny-chat", input="hi", instructions="Be brief.", max_output_tokens=8
    )
    assert plain.id.startswith("resp_") and plain.status in ("completed", "incomplete")
    assert all(item.type in ("message", "reasoning") for item in plain.output)


def test_previous_response_id_chains_on_the_real_gateway(client: openai.OpenAI) -> None:
    first = client.responses.create(model="tiny-chat", input="one", max_output_tokens=6)
    second = client.responses.create(
        model="tiny-chat", input="two", previous_response_id=first.id, max_output_tokens=6
    )
    assert second.previous_response_id == first.id
    assert first.usage is not None and second.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens  # the history was replayed
    assert client.responses.retrieve(second.id).id == second.id
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="tiny-chat", input="x", previous_response_id="resp_unknown")
    assert caught.value.code == "previous_response_not_found"


def test_a_tool_round_trips_history_renders_through_the_real_template(client: openai.OpenAI) -> None:
    history: list[ResponseInputItemParam] = [
        {"role": "user", "content": "weather in Paris, file an issue, and patch it"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call", "call_id": "c2", "name": "create_issue", "namespace": "mcp__github__",
         "arguments": "{}"},
        {"type": "custom_tool_call", "call_id": "c3", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "function_call_output", "call_id": "c1", "output": "Sunny"},
        {"type": "function_call_output", "call_id": "c2", "output": "#12"},
        {"type": "custom_tool_call_output", "call_id": "c3", "output": "Done"},
    ]  # fmt: skip
    with client.responses.stream(
        model="tiny-chat", input=history, tools=[WEATHER, GITHUB, APPLY_PATCH], max_output_tokens=8
    ) as stream:
        last = [event for event in stream][-1]
        assert isinstance(last, (ResponseCompletedEvent, ResponseIncompleteEvent))
        final = last.response
    assert final.usage is not None
    assert final.status in ("completed", "incomplete") and final.usage.input_tokens > 20


class Answer(pydantic.BaseModel):
    answer: str


def test_structured_output_is_accepted_and_echoed(client: openai.OpenAI) -> None:
    schema = Answer.model_json_schema()
    response = client.responses.create(
        model="tiny-chat",
        input="answer in JSON",
        text={"format": {"type": "json_schema", "name": "answer", "schema": schema}},
        max_output_tokens=8,
    )
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema" and response.status in ("completed", "incomplete")


def test_max_output_tokens_beyond_the_context_is_clamped(client: openai.OpenAI) -> None:
    response = client.responses.create(model="tiny-short", input="hi", max_output_tokens=32000)
    assert response.status in ("completed", "incomplete")
    assert response.usage is not None
    assert response.usage.total_tokens <= TINY_CONTEXT


def test_an_input_over_the_context_is_refused_with_both_numbers(
    client: openai.OpenAI, real_fleet: Daemon
) -> None:
    for budget in (16, None):  # measured by the gateway, then refused by the neuron itself
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model="tiny-short", input="word " * 600, max_output_tokens=budget)
        assert caught.value.code == "context_length_exceeded"
        assert str(TINY_CONTEXT) in caught.value.message
    assert "Traceback" not in real_fleet.log_text()
