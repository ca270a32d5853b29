"""Properties of the Responses dialect, checked with Hypothesis.

* Responses → chat → Responses loses nothing: random conversations (messages with text and
  images, reasoning, function, namespaced and custom calls and their outputs) come back equal
  through :mod:`tests.responses.inverse`; random tool lists flatten to unique model-facing names
  that map back to each tool, and a model's call by any of those names comes out of the stream
  translator with its namespace, name and item type restored.
* Random invalid bodies always get a 4xx in OpenAI's envelope, and random bodies never a 5xx.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import openai
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cortex_anthropic.chat_protocol import ChatChunk
from cortex_responses.events import EventTranslator
from cortex_responses.protocol import Response, ResponsesRequest
from cortex_responses.tools import model_tools
from cortex_responses.translate import chat_request
from tests import request_strategies
from tests.dialect_gateway import Gateway
from tests.responses.inverse import responses_items
from tests.responses.sse import envelope

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
texts = st.text(min_size=1, max_size=30)


@st.composite
def tool_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    def tool(kind: str, name: str) -> dict[str, Any]:
        if kind == "custom":
            return {"type": "custom", "name": name}
        return {"type": "function", "name": name, "parameters": {"type": "object", "properties": {}}}

    top = draw(
        st.lists(
            st.tuples(st.sampled_from(["function", "custom"]), names), unique_by=lambda t: t[1], max_size=4
        )
    )
    tools = [tool(kind, name) for kind, name in top]
    for namespace in draw(st.lists(names, unique=True, max_size=3)):
        inner = draw(
            st.lists(
                st.tuples(st.sampled_from(["function", "custom"]), names),
                unique_by=lambda t: t[1],
                min_size=1,
                max_size=3,
            )
        )
        tools.append(
            {
                "type": "namespace",
                "name": namespace,
                "description": "",
                "tools": [tool(k, n) for k, n in inner],
            }
        )
    return tools


def origins(tools: list[dict[str, Any]]) -> list[tuple[str | None, str, bool]]:
    found: list[tuple[str | None, str, bool]] = []
    for tool in tools:
        if tool["type"] == "namespace":
            found += [(tool["name"], inner["name"], inner["type"] == "custom") for inner in tool["tools"]]
        else:
            found.append((None, tool["name"], tool["type"] == "custom"))
    return found


@st.composite
def conversations(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tools = draw(tool_lists())
    callable_tools = origins(tools)
    items: list[dict[str, Any]] = []
    call_number = 0
    for _ in range(draw(st.integers(1, 4))):
        parts: list[dict[str, Any]] = [{"type": "input_text", "text": draw(texts)}]
        if draw(st.booleans()):
            url = draw(st.sampled_from(["https://example.com/a.png", "data:image/png;base64,AAAA"]))
            parts.insert(draw(st.integers(0, 1)), {"type": "input_image", "image_url": url})
        items.append({"type": "message", "role": "user", "content": parts})
        if draw(st.booleans()):
            reasoning = [{"type": "reasoning_text", "text": draw(texts)}]
            items.append({"type": "reasoning", "summary": [], "content": reasoning})
        calls = draw(st.lists(st.sampled_from(callable_tools), max_size=3)) if callable_tools else []
        if not calls or draw(st.booleans()):
            items.append(
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": draw(texts)}],
                }
            )
        outputs = []
        for namespace, name, custom in calls:
            call_number += 1
            call: dict[str, Any] = {"call_id": f"call_{call_number}", "name": name}
            if custom:
                call = {"type": "custom_tool_call", **call, "input": draw(st.text(max_size=30))}
            else:
                call = {"type": "function_call", **call, "arguments": draw(st.text(max_size=30))}
            if namespace is not None:
                call["namespace"] = namespace
            items.append(call)
            outputs.append(
                {
                    "type": f"{call['type']}_output",
                    "call_id": call["call_id"],
                    "output": draw(st.text(max_size=20)),
                }
            )
        items += outputs
    return tools, items


@PROPERTY
@given(conversations(), st.none() | texts)
def test_items_round_trip_through_chat(
    conversation: tuple[list[dict[str, Any]], list[dict[str, Any]]], instructions: str | None
) -> None:
    tools, items = conversation
    params = ResponsesRequest(model="m", input=items, tools=tools, instructions=instructions)
    chat, names = chat_request(params, "m", items)
    messages = msgspec.to_builtins(chat)["messages"]
    assert responses_items(messages, names) == (instructions, items)


@PROPERTY
@given(tool_lists())
def test_tools_flatten_to_unique_names_that_map_back(tools: list[dict[str, Any]]) -> None:
    converted, names = model_tools(tools)
    flat = [tool.function.name for tool in converted]
    assert len(set(flat)) == len(flat)
    assert [(o.namespace, o.name, o.custom) for o in map(names.origin, flat)] == sorted(
        origins(tools), key=lambda origin: origin[0] is not None
    )


@PROPERTY
@given(tool_lists().filter(bool), st.data())
def test_a_models_call_comes_back_as_the_clients_tool(
    tools: list[dict[str, Any]], data: st.DataObject
) -> None:
    converted, names = model_tools(tools)
    tool = data.draw(st.sampled_from(converted))
    origin = names.origin(tool.function.name)
    arguments = json.dumps({"input": "text"}) if origin.custom else "{}"
    fragment = {"index": 0, "id": "call_1", "function": {"name": tool.function.name, "arguments": arguments}}
    chunk = msgspec.convert(
        {"choices": [{"delta": {"tool_calls": [fragment]}, "finish_reason": "tool_calls"}]}, ChatChunk
    )
    translator = EventTranslator(
        Response(id="resp_1", created_at=0, model="m", status="in_progress", output=[]), names
    )
    translator.start()
    translator.feed(chunk)
    translator.finish()
    [item] = msgspec.to_builtins(translator.response.output)
    assert item["type"] == ("custom_tool_call" if origin.custom else "function_call")
    assert item["name"] == origin.name and item.get("namespace") == origin.namespace
    assert item.get("input", "text") == "text"


# ---------------------------------------------------------------------------------------------
# Invalid bodies

VALID = {"model": "scripted", "input": "hi"}


def _with(field: str, value: Any) -> dict[str, Any]:
    return {**VALID, field: value}


bad_items = st.sampled_from(
    [
        5,
        "x",
        {"type": 3},
        {},
        {"type": "message", "role": "robot", "content": "x"},
        {"type": "message", "role": "user", "content": 5},
        {"type": "message", "role": "user", "content": [{"type": "input_text"}]},
        {"type": "message", "role": "user", "content": [{"text": "no type"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_file", "file_data": "AAAA"}]},
        {"type": "function_call", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": {}},
        {"type": "function_call_output", "call_id": "c", "output": 5},
        {"type": "custom_tool_call", "call_id": "c", "name": "f"},
        {"type": "reasoning", "summary": "x"},
    ]
)
invalid_documents = st.one_of(
    st.sampled_from(
        [{}, {"input": "hi"}, {"model": 5, "input": "hi"}, _with("input", []), _with("input", 5)]
    ),
    bad_items.map(lambda item: _with("input", [item])),
    st.sampled_from(
        [
            ("tools", {"type": "function"}),
            ("tools", [5]),
            ("tools", [{"name": "no type"}]),
            ("tools", [{"type": "function"}]),
            ("tools", [{"type": "function", "name": "f", "parameters": "x"}]),
            ("tools", [{"type": "namespace", "name": "n", "tools": "x"}]),
            ("tools", [{"type": "custom", "name": 5}]),
            ("tool_choice", "whenever"),
            ("tool_choice", 5),
            ("temperature", "hot"),
            ("temperature", 3),
            ("top_p", 2),
            ("max_output_tokens", 0),
            ("max_output_tokens", "many"),
            ("reasoning", {"effort": "extreme"}),
            ("reasoning", "high"),
            ("text", {"format": {"type": "xml"}}),
            ("text", {"format": {"type": "json_schema", "name": "x"}}),
            ("metadata", "user"),
            ("metadata", {"k": 5}),
            ("previous_response_id", "resp_unknown"),
            ("previous_response_id", 5),
            ("stream", "yes"),
            ("store", "no"),
            ("instructions", ["x"]),
            ("model", "no-such-model"),
        ]
    ).map(lambda pair: _with(*pair)),
)
invalid_bodies = request_strategies.invalid_bodies(invalid_documents)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
KEYS = [*ResponsesRequest.__struct_fields__, "truncation", "service_tier"]


def test_invalid_bodies_always_get_a_4xx_in_openais_envelope(gateway: Gateway[openai.OpenAI]) -> None:
    @settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(invalid_bodies, st.booleans())
    def check(body: bytes, streamed: bool) -> None:
        if streamed and body.startswith(b"{"):
            body = json.dumps({"stream": True, **json.loads(body)}).encode()
        response = gateway.http.post(
            "/v1/responses", content=body, headers={"content-type": "application/json"}
        )
        assert 400 <= response.status_code < 500, (body, response.status_code, response.text)
        envelope(response)

    check()


def test_random_bodies_never_get_a_5xx(gateway: Gateway[openai.OpenAI]) -> None:
    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.dictionaries(st.sampled_from(KEYS), json_values, max_size=4))
    def check(fields: dict[str, Any]) -> None:
        response = gateway.http.post("/v1/responses", json={**VALID, **fields})
        assert response.status_code < 500, (fields, response.status_code, response.text)
        if response.status_code != 200:
            envelope(response)

    check()
