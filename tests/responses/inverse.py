"""The inverse translation, OpenAI chat → Responses items, used to prove the forward one loses
nothing (``test_properties.py``).

It undoes each documented choice of :mod:`cortex_responses.translate`: the leading system message
becomes ``instructions``; an assistant message becomes its ``reasoning`` item, its ``message`` item
and its calls (flattened names restored through the request's :class:`ToolNames`, a custom call's
``{"input": ...}`` unwrapped); a ``tool`` message becomes the output item of the call it answers.
"""

from __future__ import annotations

import json
from typing import Any

from cortex_responses.tools import CUSTOM_ARGUMENT, ToolNames


def _user_parts(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "input_text", "text": content}]
    return [
        {"type": "input_text", "text": part["text"]}
        if part["type"] == "text"
        else {"type": "input_image", "image_url": part["image_url"]["url"]}
        for part in content
    ]


def responses_items(
    messages: list[dict[str, Any]], names: ToolNames
) -> tuple[str | None, list[dict[str, Any]]]:
    """``(instructions, items)`` for chat ``messages`` (as JSON objects)."""
    instructions = None
    if messages and messages[0]["role"] == "system":
        instructions, messages = messages[0]["content"], messages[1:]
    items: list[dict[str, Any]] = []
    kinds: dict[str, str] = {}
    for message in messages:
        role = message["role"]
        if role == "user":
            items.append({"type": "message", "role": "user", "content": _user_parts(message["content"])})
        elif role == "tool":
            kind = kinds[message["tool_call_id"]]
            items.append(
                {"type": f"{kind}_output", "call_id": message["tool_call_id"], "output": message["content"]}
            )
        else:
            if message.get("reasoning_content"):
                text = message["reasoning_content"]
                items.append(
                    {
                        "type": "reasoning",
                        "summary": [],
                        "content": [{"type": "reasoning_text", "text": text}],
                    }
                )
            if message["content"]:
                items.append(
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": message["content"]}],
                    }
                )
            for call in message.get("tool_calls", []):
                origin = names.origin(call["function"]["name"])
                item: dict[str, Any] = {"call_id": call["id"], "name": origin.name}
                if origin.custom:
                    item = {"type": "custom_tool_call", **item}
                    item["input"] = json.loads(call["function"]["arguments"])[CUSTOM_ARGUMENT]
                else:
                    item = {"type": "function_call", **item, "arguments": call["function"]["arguments"]}
                if origin.namespace is not None:
                    item["namespace"] = origin.namespace
                kinds[call["id"]] = item["type"]
                items.append(item)
    return instructions, items
