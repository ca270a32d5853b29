"""A request shaped like a real Claude Code turn is accepted, translated and answered."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import anthropic
import pytest

from tests.anthropic.scripted import chunk, reply
from tests.anthropic.sse import frames
from tests.dialect_gateway import Gateway

CAPTURED = json.loads((Path(__file__).parent / "fixtures" / "claude_code_request.json").read_text())


@pytest.fixture
def claude_code_gateway(
    make_gateway: Callable[..., Gateway[anthropic.Anthropic]],
) -> Gateway[anthropic.Anthropic]:
    # Claude Code names Anthropic models; the operator maps them with aliases.
    return make_gateway(aliases={"claude-opus-4-7": "scripted"})


def answer(gateway: Gateway[anthropic.Anthropic]) -> None:
    gateway.neuron.then(
        reply(
            chunk(reasoning="The test target runs pytest -q."),
            chunk(content="It runs `pytest -q`; "),
            chunk(content="the only flag is -q."),
        )
    )


def test_the_captured_streamed_request_is_answered(claude_code_gateway: Gateway[anthropic.Anthropic]) -> None:
    answer(claude_code_gateway)
    response = claude_code_gateway.http.post(
        "/v1/messages?" + CAPTURED["query"], json=CAPTURED["body"], headers=CAPTURED["headers"]
    )
    assert response.status_code == 200, response.text
    events = frames(response.text)
    names = [name for name, _ in events if name != "ping"]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    delta = next(data for name, data in events if name == "message_delta")
    assert delta["delta"]["stop_reason"] == "end_turn"
    text = "".join(data["delta"].get("text", "") for name, data in events if name == "content_block_delta")
    assert text == "It runs `pytest -q`; the only flag is -q."


def test_what_the_neuron_receives_for_it(claude_code_gateway: Gateway[anthropic.Anthropic]) -> None:
    answer(claude_code_gateway)
    claude_code_gateway.http.post(
        "/v1/messages?" + CAPTURED["query"], json=CAPTURED["body"], headers=CAPTURED["headers"]
    )
    sent = claude_code_gateway.neuron.last
    assert sent["model"] == "scripted"
    roles = [message["role"] for message in sent["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    system = sent["messages"][0]["content"]
    assert system.startswith("You are Claude Code") and "x-anthropic-billing-header" not in system
    assert system.endswith("The user switched to plan mode.")
    assistant = sent["messages"][2]
    assert assistant["reasoning_content"] == "I should read the Makefile."
    assert assistant["tool_calls"][0]["id"] == "toolu_01A9q7cQyDRGdZJv3hxW5Y2k"
    assert sent["messages"][3]["content"].startswith("     1\ttest:")
    names = [tool["function"]["name"] for tool in sent["tools"]]
    assert names == [
        "Bash",
        "Read",
        "mcp__plugin_github_server__search_pull_requests_by_label_and_reviewer_for_repository",
    ]  # the server tool (web_search) is dropped
    assert "input_examples" not in json.dumps(sent["tools"]) and "cache_control" not in json.dumps(sent)
    assert sent["chat_template_kwargs"] == {"enable_thinking": True}
    assert sent["reasoning_effort"] == "high"
    assert sent["user"] == "user_3f9a_account__session_6c1f2d0e"
    assert sent["max_completion_tokens"] <= 4096  # 32000 clamped to the scripted model's context


def test_its_non_streamed_fallback_is_answered_too(claude_code_gateway: Gateway[anthropic.Anthropic]) -> None:
    answer(claude_code_gateway)
    body = copy.deepcopy(CAPTURED["body"])
    body["stream"] = False
    response = claude_code_gateway.http.post(
        "/v1/messages?" + CAPTURED["query"], json=body, headers=CAPTURED["headers"]
    )
    assert response.status_code == 200, response.text
    message = response.json()
    assert [block["type"] for block in message["content"]] == ["thinking", "text"]
    assert message["stop_reason"] in ("end_turn", "model_context_window_exceeded")


def test_its_count_tokens_call_is_answered(claude_code_gateway: Gateway[anthropic.Anthropic]) -> None:
    body = {key: CAPTURED["body"][key] for key in ("model", "messages", "system", "tools", "thinking")}
    response = claude_code_gateway.http.post(
        "/v1/messages/count_tokens?beta=true", json=body, headers=CAPTURED["headers"]
    )
    assert response.status_code == 200 and response.json()["input_tokens"] > 0
