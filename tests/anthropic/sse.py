"""Reading a raw Anthropic SSE response the way a strict client would."""

from __future__ import annotations

import json
from typing import Any

from anthropic.types import MessageParam
from starlette.testclient import TestClient

from tests.anthropic.headers import ANTHROPIC

USER_HI: list[MessageParam] = [{"role": "user", "content": "hi"}]


def frames(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``(event, data)`` per frame; asserts that every frame has both lines and that they agree."""
    parsed = []
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        assert len(lines) == 2, f"a frame needs an event line and a data line: {block!r}"
        event, data = lines
        assert event.startswith("event: ") and data.startswith("data: "), block
        payload = json.loads(data.removeprefix("data: "))
        assert payload["type"] == event.removeprefix("event: ")
        parsed.append((payload["type"], payload))
    return parsed


def post_stream(
    http: TestClient, body: dict[str, Any], path: str = "/v1/messages"
) -> list[tuple[str, dict[str, Any]]]:
    """POST a streamed request and return its frames (the status must be 200)."""
    response = http.post(path, json={"stream": True, **body}, headers=ANTHROPIC)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return frames(response.text)


def request(model: str = "scripted", **fields: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 64, "messages": USER_HI, **fields}
