"""``GET /models/sse`` on a real gateway: Zed's llama.cpp provider hears a model load and unload."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.daemons import Daemon, LineStream, http_json

pytestmark = pytest.mark.slow


def next_status(stream: LineStream, model: str, wanted: str, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Events read until ``model`` reaches ``wanted`` (fails after ``timeout_s``)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    for line in stream:
        assert time.monotonic() < deadline, seen
        if not line.startswith("data:"):
            continue
        event = json.loads(line.removeprefix("data:"))
        seen.append(event)
        if event["model"] == model and event.get("data", {}).get("status") == wanted:
            return seen
    raise AssertionError(f"the stream ended before {model} was {wanted}: {seen}")


def test_a_load_and_an_unload_reach_the_event_stream(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon]
) -> None:
    gateway = start_gateway({"n1": start_neuron()})
    with LineStream(gateway.url + "/models/sse", timeout=90) as stream:
        content_type = stream.getheader("content-type")
        assert (
            stream.status == 200 and content_type is not None and content_type.startswith("text/event-stream")
        )
        status, _, _ = http_json("POST", f"{gateway.url}/admin/models/load", {"model": "tiny-chat"})
        assert status == 202
        events = next_status(stream, "tiny-chat", "loaded")
        assert all(e["event"] == "status_change" for e in events if e["model"] == "tiny-chat")
        listing = http_json("GET", f"{gateway.url}/v1/models")[1]["data"]
        assert {e["id"]: e["status"]["value"] for e in listing}["tiny-chat"] == "loaded"
        status, _, _ = http_json("POST", f"{gateway.url}/admin/models/unload", {"model": "tiny-chat"})
        assert status < 300
        next_status(stream, "tiny-chat", "unloaded")
