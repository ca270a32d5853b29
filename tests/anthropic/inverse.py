"""The inverse translation, OpenAI chat → Anthropic Messages, used to prove the forward one loses
no content (``test_properties.py``).

It undoes each documented choice of :mod:`cortex_anthropic.translate`: the leading system message
becomes ``system``; ``tool`` messages become ``tool_result`` blocks (the error prefix becomes
``is_error``, and each image placeholder takes back, in order, an image from the front of the
user message that follows); ``tool_calls`` become ``tool_use`` blocks; ``reasoning_content``
becomes a thinking block (signatures are not carried to a neuron, so they come back empty).
"""

from __future__ import annotations

import json
from typing import Any

from cortex_anthropic.translate import IMAGE_PLACEHOLDER, JOIN, TOOL_ERROR_PREFIX


def _image_block(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        media_type, _, data = url.removeprefix("data:").partition(";base64,")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _user_blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks = []
    for part in content:
        if part["type"] == "text":
            blocks.append({"type": "text", "text": part["text"]})
        else:
            blocks.append(_image_block(part["image_url"]["url"]))
    return blocks


def _tool_result(message: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The result block and how many images it had (placeholders)."""
    content: str = message["content"]
    is_error = content.startswith(TOOL_ERROR_PREFIX)
    content = content.removeprefix(TOOL_ERROR_PREFIX)
    pieces = content.split(JOIN)
    images = pieces.count(IMAGE_PLACEHOLDER)
    text = JOIN.join(piece for piece in pieces if piece != IMAGE_PLACEHOLDER)
    block = {
        "type": "tool_result",
        "tool_use_id": message["tool_call_id"],
        "content": text,
        "is_error": is_error,
    }
    return block, images


def to_anthropic(chat: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat request (as JSON) back into Anthropic ``system``, ``messages``, ``tools``."""
    messages = chat["messages"]
    system = None
    if messages and messages[0]["role"] == "system":
        system, messages = messages[0]["content"], messages[1:]
    turns: list[dict[str, Any]] = []
    index = 0
    while index < len(messages):
        message = messages[index]
        if message["role"] == "assistant":
            blocks: list[dict[str, Any]] = []
            if message.get("reasoning_content"):
                blocks.append({"type": "thinking", "thinking": message["reasoning_content"], "signature": ""})
            if message["content"]:
                blocks.append({"type": "text", "text": message["content"]})
            for call in message.get("tool_calls", []):
                function = call["function"]
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call["id"],
                        "name": function["name"],
                        "input": json.loads(function["arguments"]),
                    }
                )
            turns.append({"role": "assistant", "content": blocks})
            index += 1
        elif message["role"] == "tool":
            results, owed = [], []
            while index < len(messages) and messages[index]["role"] == "tool":
                block, images = _tool_result(messages[index])
                results.append(block)
                owed.append(images)
                index += 1
            rest: list[dict[str, Any]] = []
            if sum(owed) and index < len(messages) and messages[index]["role"] == "user":
                rest = _user_blocks(messages[index]["content"])
                index += 1
            for block, images in zip(results, owed, strict=True):
                if images:
                    block["content"] = [{"type": "text", "text": block["content"]}, *rest[:images]]
                    rest = rest[images:]
            turns.append({"role": "user", "content": results + rest})
        else:
            turns.append({"role": "user", "content": _user_blocks(message["content"])})
            index += 1
    tools = [
        {
            "name": tool["function"]["name"],
            "input_schema": tool["function"]["parameters"],
            **({"description": tool["function"]["description"]} if "description" in tool["function"] else {}),
        }
        for tool in chat.get("tools", [])
    ]
    return {"system": system, "messages": turns, "tools": tools}
