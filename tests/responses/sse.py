"""Reading a raw Responses SSE body the way a strict client would."""

from __future__ import annotations

import json
from typing import Any

from starlette.testclient import TestClient

KEEPALIVE_COMMENT = ": keep-alive"


def frames(text: str) -> list[dict[str, Any]]:
    """Every event's data; asserts each frame has an ``event:`` and a ``data:`` line that agree
    (keep-alive comments are skipped)."""
    parsed = []
    for block in text.strip().split("\n\n"):
        if block.startswith(":"):
            continue
        event, data = block.split("\n")
        assert event.startswith("event: ") and data.startswith("data: "), block
        payload = json.loads(data.removeprefix("data: "))
        assert payload["type"] == event.removeprefix("event: ")
        parsed.append(payload)
    return parsed


def post_stream(http: TestClient, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """POST a streamed request; its events and the raw body (the status must be 200)."""
    response = http.post("/v1/responses", json={"stream": True, **body})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return frames(response.text), response.text


def envelope(response: Any) -> dict[str, Any]:
    """The ``error`` object of an OpenAI-envelope error reply (asserting its shape)."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "code", "param"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


def documented_order(types: list[str]) -> None:
    """Asserts the documented sequence: created, in_progress, then each item framed by added/done
    (content parts and deltas inside their item), and one terminal event last."""
    assert types[:2] == ["response.created", "response.in_progress"], types
    assert types[-1] in ("response.completed", "response.incomplete", "response.failed"), types
    open_items = 0
    open_parts = 0
    for kind in types[2:-1]:
        if kind == "response.output_item.added":
            open_items += 1
        elif kind == "response.output_item.done":
            assert open_items > 0 and open_parts == 0, types
            open_items -= 1
        elif kind == "response.content_part.added":
            assert open_items > 0, types
            open_parts += 1
        elif kind == "response.content_part.done":
            open_parts -= 1
        else:
            assert open_items > 0, f"{kind} outside an item: {types}"
    if types[-1] != "response.failed":
        assert open_items == 0 and open_parts == 0, types
