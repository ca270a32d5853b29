"""The fleet's model states in llama.cpp's router words (what Zed's llama.cpp provider reads)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from cortex_gateway.model_events import changes, model_events
from cortex_gateway.model_status import listing, props_body, router_status
from cortex_kernel.catalogue_entry import CatalogueEntry, ModelLocation


@pytest.mark.parametrize(
    ("states", "word"),
    [
        ([], "unloaded"),
        (["ready"], "loaded"),
        (["loading"], "loading"),
        (["waking"], "loading"),
        (["sleeping"], "sleeping"),
        (["unloading"], "unloaded"),
        (["failed"], "unloaded"),
        (["sleeping", "loading"], "loading"),
        (["failed", "sleeping", "ready", "loading"], "loaded"),
        (["something-new"], "unloaded"),
    ],
)
def test_the_best_replica_names_the_status(states: list[str], word: str) -> None:
    assert router_status(states) == word


def test_an_entry_gains_status_context_and_display_name() -> None:
    entry = CatalogueEntry(id="m", context_length=8192, locations=[ModelLocation(node="a", state="loading")])
    fields = msgspec.to_builtins(listing(entry))
    assert fields["display_name"] == "m"
    assert fields["status"] == {"value": "loading"}
    assert fields["meta"] == {"n_ctx": 8192}
    bare = msgspec.to_builtins(listing(CatalogueEntry(id="alias-of-nothing")))
    assert bare["status"] == {"value": "unloaded"} and "meta" not in bare


def test_props_report_the_context_and_tool_support() -> None:
    body = msgspec.to_builtins(props_body(CatalogueEntry(id="m", context_length=4096)))
    assert body["default_generation_settings"]["n_ctx"] == 4096
    assert body["chat_template_caps"]["supports_tools"] is True
    assert body["modalities"]["vision"] is False


# ---------------------------------------------------------------------------------------------
# /models/sse: the changes between two snapshots, as Zed's ModelEvent reads them.


def decode(frames: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(frame.decode().removeprefix("data: ")) for frame in frames]


def test_a_status_change_is_one_event_and_loading_carries_a_stage() -> None:
    events = decode(changes({"a": "unloaded", "b": "loaded"}, {"a": "loading", "b": "loaded"}))
    assert events == [
        {
            "model": "a",
            "event": "status_change",
            "data": {
                "status": "loading",
                "progress": {"stages": ["model"], "current": "model", "value": 0.0},
            },
        }
    ]
    [loaded] = decode(changes({"a": "loading"}, {"a": "loaded"}))
    assert loaded == {"model": "a", "event": "status_change", "data": {"status": "loaded"}}


def test_a_model_appearing_or_leaving_is_a_reload() -> None:
    assert decode(changes({"a": "loaded"}, {"a": "loaded", "b": "unloaded"})) == [
        {"model": "*", "event": "models_reload"}
    ]
    assert changes({"a": "loaded"}, {"a": "loaded"}) == []


async def test_the_stream_sends_changes_then_keepalives_and_ends_on_drain() -> None:
    states = iter([{"a": "unloaded"}, {"a": "loading"}, {"a": "loaded"}, {"a": "loaded"}, {"a": "loaded"}])
    last: dict[str, str] = {}

    def snapshot() -> dict[str, str]:
        last.update(next(states, last))
        return dict(last)

    ticks: list[bytes] = []
    stream = model_events(snapshot, lambda: len(ticks) >= 4, tick_s=0.001, keepalive_s=0.002)
    body = []
    async for piece in stream:
        body.append(piece)
        ticks.append(piece)
    assert body[0].startswith(b":")
    statuses = [json.loads(p.decode().removeprefix("data: "))["data"]["status"] for p in body[1:3]]
    assert statuses == ["loading", "loaded"]
    assert body[3] == b": keep-alive\n\n"
