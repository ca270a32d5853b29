"""The request translation, Anthropic → OpenAI chat, on its own (no HTTP)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from cortex_anthropic.protocol import MessagesRequest
from cortex_anthropic.translate import IMAGE_PLACEHOLDER, TOOL_ERROR_PREFIX, generation_request
from cortex_kernel.errors import BadRequest

PNG = "iVBORw0KGgo="


def translate(**fields: Any) -> dict[str, Any]:
    body = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **fields}
    request = msgspec.convert(body, MessagesRequest)
    translated: dict[str, Any] = msgspec.to_builtins(generation_request(request, "m"))
    return translated


def test_system_blocks_and_system_role_messages_merge_into_one_leading_system_message() -> None:
    chat = translate(
        system=[
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1; cch=abc;"},
            {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Answer in English."},
        ],
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "Mid-conversation rule."},
            {"role": "assistant", "content": "hello"},
            {"role": "system", "content": [{"type": "text", "text": "Another rule."}]},
            {"role": "user", "content": "again"},
        ],
    )
    roles = [message["role"] for message in chat["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert chat["messages"][0]["content"] == (
        "You are terse.\n\nAnswer in English.\n\nMid-conversation rule.\n\nAnother rule."
    )


def test_sampling_fields_and_metadata_map_and_streaming_always_asks_for_usage() -> None:
    chat = translate(
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        stop_sequences=["END"],
        metadata={"user_id": "u-1"},
        stream=False,
    )
    assert chat["temperature"] == 0.2 and chat["top_p"] == 0.9 and chat["top_k"] == 40
    assert chat["user"] == "u-1"
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}
    assert "stop" not in chat  # matched by the dialect itself, so it can report which one
    assert chat["chat_template_kwargs"] == {"enable_thinking": False}


@pytest.mark.parametrize(
    ("thinking", "enabled"),
    [
        ({"type": "enabled", "budget_tokens": 2048}, True),
        ({"type": "adaptive"}, True),
        ({"type": "between_tools"}, True),
        ({"type": "disabled"}, False),
        (None, False),
    ],
)
def test_thinking_switches_the_templates_reasoning(thinking: dict[str, Any] | None, enabled: bool) -> None:
    chat = translate(**({"thinking": thinking} if thinking else {}))
    assert chat["chat_template_kwargs"]["enable_thinking"] is enabled


def test_effort_and_structured_output_map_when_thinking_is_on() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    chat = translate(
        thinking={"type": "adaptive"},
        output_config={"effort": "xhigh", "format": {"type": "json_schema", "schema": schema}},
    )
    assert chat["reasoning_effort"] == "high"
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }


def test_tools_and_tool_choice() -> None:
    tools = [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            "cache_control": {"type": "ephemeral"},
            "input_examples": [{"city": "Paris"}],
            "defer_loading": False,
        },
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
        {"type": "custom", "name": "noop", "input_schema": {"type": "object"}, "strict": True},
    ]
    chat = translate(tools=tools, tool_choice={"type": "any", "disable_parallel_tool_use": True})
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                "description": "Weather for a city",
            },
        },
        {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}, "strict": True}},
    ]
    assert chat["tool_choice"] == "required" and chat["parallel_tool_calls"] is False
    named = translate(tools=tools, tool_choice={"type": "tool", "name": "noop"})
    assert named["tool_choice"] == {"type": "function", "function": {"name": "noop"}}
    assert "parallel_tool_calls" not in named
    assert translate(tools=tools, tool_choice={"type": "none"})["tool_choice"] == "none"
    assert translate(tools=tools, tool_choice={"type": "auto"})["tool_choice"] == "auto"
    assert "tool_choice" not in translate(tool_choice={"type": "any"})  # no tools, no choice


def test_tool_use_and_results_become_tool_calls_and_tool_messages_with_images_moved() -> None:
    chat = translate(
        messages=[
            {"role": "user", "content": "weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Two cities.", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Here you go."},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [
                            {"type": "text", "text": "Sunny"},
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                            },
                        ],
                    },
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "timeout", "is_error": True},
                ],
            },
        ]
    )
    user, assistant, first, second, after = chat["messages"]
    assert user == {"role": "user", "content": "weather in Paris and Rome?"}
    assert assistant == {
        "role": "assistant",
        "content": "Checking.",
        "reasoning_content": "Two cities.",
        "tool_calls": [
            {
                "type": "function",
                "id": "toolu_1",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            },
            {
                "type": "function",
                "id": "toolu_2",
                "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
            },
        ],
    }
    assert first == {"role": "tool", "tool_call_id": "toolu_1", "content": f"Sunny\n\n{IMAGE_PLACEHOLDER}"}
    assert second == {"role": "tool", "tool_call_id": "toolu_2", "content": TOOL_ERROR_PREFIX + "timeout"}
    assert after == {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "text", "text": "Here you go."},
        ],
    }


def test_images_documents_and_unknown_blocks_in_a_user_turn() -> None:
    chat = translate(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "Doc body"},
                        "title": "Notes",
                    },
                    {
                        "type": "document",
                        "source": {"type": "content", "content": [{"type": "text", "text": "Part"}]},
                    },
                    {"type": "a_block_from_the_future", "payload": 1},
                    {"type": "text", "text": "   "},
                    {"type": "text", "text": "Describe."},
                ],
            }
        ]
    )
    assert chat["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                {"type": "text", "text": "Notes\n\nDoc body"},
                {"type": "text", "text": "Part"},
                {"type": "text", "text": "Describe."},
            ],
        }
    ]


def test_a_final_assistant_turn_is_continued() -> None:
    chat = translate(
        messages=[{"role": "user", "content": "Pick A or B"}, {"role": "assistant", "content": "I pick ("}]
    )
    assert chat["chat_template_kwargs"]["continue_final_message"] is True
    assert chat["messages"][-1] == {"role": "assistant", "content": "I pick ("}


@pytest.mark.parametrize(
    ("messages", "where"),
    [
        ([{"role": "user", "content": [{"type": "text"}]}], "messages[0].content[0]"),
        ([{"role": "user", "content": [{"text": "no type"}]}], "messages[0].content[0].type"),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "document", "source": {"type": "base64", "data": "JVBER"}}],
                }
            ],
            "messages[0].content[0].source",
        ),
        (
            [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}],
            "messages[0].content[0].source",
        ),
        (
            [{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "x"}]}],
            "messages[0].content[0]",
        ),
        (
            [{"role": "user", "content": [{"type": "tool_use", "id": "x", "name": "n", "input": {}}]}],
            "messages[0].content[0]",
        ),
    ],
)
def test_malformed_blocks_are_400s_that_say_where(messages: list[dict[str, Any]], where: str) -> None:
    with pytest.raises(BadRequest) as caught:
        translate(messages=messages)
    assert caught.value.message.startswith(where)


def test_a_named_tool_choice_needs_a_name() -> None:
    with pytest.raises(BadRequest, match=r"tool_choice\.name"):
        translate(tools=[{"name": "t", "input_schema": {"type": "object"}}], tool_choice={"type": "tool"})
