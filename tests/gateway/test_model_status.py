"""The fleet's model states in llama.cpp's router words (what Zed's llama.cpp provider reads)."""

from __future__ import annotations

import pytest

from cortex_gateway.model_status import props_body, router_fields, router_status


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
def test_the_best_replica_names_the_status(states, word):
    assert router_status(states) == word


def test_an_entry_gains_status_context_and_display_name():
    entry = {"id": "m", "context_length": 8192, "locations": [{"node": "a", "state": "loading"}]}
    assert router_fields(entry) == {
        "display_name": "m",
        "status": {"value": "loading"},
        "meta": {"n_ctx": 8192},
    }
    assert router_fields({"id": "alias-of-nothing"}) == {
        "display_name": "alias-of-nothing",
        "status": {"value": "unloaded"},
    }


def test_props_report_the_context_and_tool_support():
    body = props_body({"id": "m", "context_length": 4096})
    assert body["default_generation_settings"]["n_ctx"] == 4096
    assert body["chat_template_caps"]["supports_tools"] is True
    assert body["modalities"]["vision"] is False
