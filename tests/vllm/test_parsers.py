"""vLLM's own renderer and tool/reasoning parsers, chosen per profile, on scripted model output.

The renderer and parsers are vLLM's real classes over the tiny synthetic checkpoint's real
tokenizer (its ``<think>`` and ``<tool_call>`` markers are what the ``qwen3`` reasoning parser
and the ``hermes`` tool parser look for); only the model's reply is scripted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("vllm", reason="vllm is not installed")

from vllm.outputs import CompletionOutput, RequestOutput

from cortex_kernel.errors import BadRequest
from cortex_kernel.harness import ContextLengthExceeded, Delta
from cortex_kernel.openai_wire import ChatRequest, CompletionRequest
from cortex_vllm.frontend import Frontend
from cortex_vllm.options import read_options
from tests.vllm.scripted import frontend_parts

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@dataclass
class EngineParts:
    """What ``Frontend`` reads from an ``AsyncLLM``."""

    model_config: Any
    renderer: Any


def frontend(model: str, context_length: int = 4096, **options: Any) -> Frontend:
    model_config, renderer = frontend_parts(model, context_length)
    return Frontend(EngineParts(model_config, renderer), read_options({}, options))


def chat(content: str = "What is the weather in Paris?", **fields: Any) -> ChatRequest:
    return ChatRequest(model="m", messages=[{"role": "user", "content": content}], **fields)


async def stream(front: Frontend, request: ChatRequest, reply: str, step: int = 3) -> list[Delta]:
    """Render ``request``, then feed ``reply`` to the adapter as an engine would, ``step`` tokens at once."""
    prepared = await front.prepare_chat(request)
    tokenizer = front.online.renderer.get_tokenizer()
    ids = list(tokenizer.encode(reply, add_special_tokens=False))
    adapter = prepared.adapter()
    deltas: list[Delta] = []
    for start in range(0, len(ids), step):
        chunk = ids[start : start + step]
        text = tokenizer.decode(ids[: start + len(chunk)])[len(tokenizer.decode(ids[:start])) :]
        done = start + step >= len(ids)
        completion = CompletionOutput(
            index=0,
            text=text,
            token_ids=chunk,
            cumulative_logprob=None,
            logprobs=None,
            finish_reason="stop" if done else None,
        )
        deltas += adapter.feed(
            RequestOutput("r", None, prepared.prompt_token_ids, None, [completion], finished=done)
        )
    return deltas


def joined(deltas: list[Delta]) -> tuple[str, str]:
    return "".join(d.text for d in deltas), "".join(d.reasoning for d in deltas)


async def test_reasoning_content_and_a_tool_call_are_split(tiny_chat_model: Path) -> None:
    front = frontend(str(tiny_chat_model), tool_parser="hermes", reasoning_parser="qwen3")
    reply = "<think>\nThe user wants weather.\n</think>\n\nLet me check. " + CALL
    deltas = await stream(front, chat(tools=[WEATHER_TOOL]), reply)
    text, reasoning = joined(deltas)
    assert reasoning.strip() == "The user wants weather."
    assert text.strip() == "Let me check."
    calls = [call for delta in deltas for call in delta.tool_calls]
    assert calls[0].id is not None and calls[0].id.startswith("call_")
    assert calls[0].name == "get_weather"
    assert {call.index for call in calls} == {0}
    assert [call.id for call in calls[1:]] == [None] * (len(calls) - 1)
    assert json.loads("".join(call.arguments for call in calls)) == {"city": "Paris"}
    assert deltas[-1].finish_reason == "tool_calls"


async def test_a_prompt_that_opens_reasoning_is_seen_by_the_reasoning_parser(tiny_chat_model: Path) -> None:
    front = frontend(str(tiny_chat_model), reasoning_parser="qwen3")
    request = chat("hi", chat_template_kwargs={"enable_thinking": True})
    prepared = await front.prepare_chat(request)
    assert front.online.renderer.get_tokenizer().decode(prepared.prompt_token_ids).endswith("<think>\n")
    text, reasoning = joined(await stream(front, request, "pondering\n</think>\n\nHello!"))
    assert reasoning.strip() == "pondering"
    assert text.strip() == "Hello!"


async def test_without_a_tool_parser_tool_markup_stays_text(tiny_chat_model: Path) -> None:
    front = frontend(str(tiny_chat_model), reasoning_parser="qwen3")
    # Qwen3's parser reads text before a tool call as reasoning unless thinking is off.
    deltas = await stream(front, chat(chat_template_kwargs={"enable_thinking": False}), "Sure. " + CALL)
    assert not [call for delta in deltas for call in delta.tool_calls]
    assert joined(deltas)[0] == "Sure. " + CALL
    assert deltas[-1].finish_reason == "stop"


async def test_tools_without_a_tool_parser_are_refused_naming_the_option(tiny_chat_model: Path) -> None:
    front = frontend(str(tiny_chat_model), reasoning_parser="qwen3")
    with pytest.raises(BadRequest) as caught:
        await front.prepare_chat(chat(tools=[WEATHER_TOOL]))
    assert (caught.value.code, caught.value.param) == ("tools_not_supported", "tools")
    assert "'tool_parser'" in caught.value.message
    await front.prepare_chat(chat(tools=[WEATHER_TOOL], tool_choice="none"))  # fine: tools unused


async def test_tool_choice_none_leaves_tool_markup_as_text(tiny_chat_model: Path) -> None:
    front = frontend(str(tiny_chat_model), tool_parser="hermes")
    deltas = await stream(front, chat(tools=[WEATHER_TOOL], tool_choice="none"), CALL)
    assert not [call for delta in deltas for call in delta.tool_calls]
    assert deltas[-1].finish_reason == "stop"


async def test_without_parsers_everything_is_text(tiny_chat_model: Path) -> None:
    front = frontend(str(tiny_chat_model))
    assert front.parser_cls is None
    reply = "<think>\nhm\n</think>\n\nok " + CALL
    deltas = await stream(front, chat(), reply)
    assert joined(deltas) == (reply, "")


def test_the_capabilities_follow_the_chosen_parsers(tiny_chat_model: Path) -> None:
    model = str(tiny_chat_model)
    assert frontend(model).capabilities == ["chat", "completions", "structured_outputs"]
    both = frontend(model, tool_parser="hermes", reasoning_parser="qwen3").capabilities
    assert {"tools", "reasoning"} <= set(both)


@pytest.mark.parametrize("option", ["tool_parser", "reasoning_parser"])
def test_an_unknown_parser_is_an_error_naming_it(tiny_chat_model: Path, option: str) -> None:
    with pytest.raises(BadRequest) as caught:
        options: dict[str, Any] = {option: "no-such-parser"}
        frontend(str(tiny_chat_model), **options)
    assert caught.value.code == "invalid_option"
    assert "no-such-parser" in caught.value.message


async def test_tools_are_rendered_into_the_prompt_by_the_chat_template(tiny_chat_model: Path) -> None:
    front = frontend(str(tiny_chat_model), tool_parser="hermes")
    _, _, plain = await front.render_chat(chat())
    _, engine_input, with_tools = await front.render_chat(chat(tools=[WEATHER_TOOL]))
    assert len(with_tools) > len(plain)
    assert '"get_weather"' in front.online.renderer.get_tokenizer().decode(with_tools)
    assert list(engine_input["prompt_token_ids"]) == with_tools


async def test_a_prompt_longer_than_the_context_reports_its_exact_length(tiny_chat_model: Path) -> None:
    front = frontend(str(tiny_chat_model), context_length=64)
    request = chat("hello " * 200)
    _, _, ids = await front.render_chat(request)
    assert len(ids) > 200  # tokenized in full, not cut at the context
    with pytest.raises(ContextLengthExceeded) as caught:
        await front.prepare_chat(request)
    assert (caught.value.prompt_tokens, caught.value.limit) == (len(ids), 64)


async def test_max_tokens_is_clamped_to_the_room_left(tiny_chat_model: Path) -> None:
    front = frontend(str(tiny_chat_model), context_length=256)
    prepared = await front.prepare_chat(chat(max_tokens=10_000))
    assert prepared.params.max_tokens == 256 - len(prepared.prompt_token_ids)


async def test_without_a_limit_the_checkpoint_default_applies(tiny_chat_model: Path) -> None:
    front = frontend(str(tiny_chat_model))
    assert (await front.prepare_chat(chat())).params.max_tokens == 512  # generation_config.json
    limited = frontend(str(tiny_chat_model), default_max_tokens=33)
    assert (await limited.prepare_chat(chat())).params.max_tokens == 33


async def test_a_completion_prompt_is_tokenized_without_the_chat_template(tiny_chat_model: Path) -> None:
    front = frontend(str(tiny_chat_model))
    prepared = await front.prepare_completion(
        CompletionRequest(model="m", prompt="hello world", max_tokens=4)
    )
    tokenizer = front.online.renderer.get_tokenizer()
    assert tokenizer.decode(prepared.prompt_token_ids) == "hello world"
    assert prepared.params.max_tokens == 4
    with pytest.raises(BadRequest):
        await front.prepare_completion(CompletionRequest(model="m", prompt=["a", "b"]))
