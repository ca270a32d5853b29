"""Zed's llama.cpp provider against the gateway: the router listing and ``/props`` it reads.

The shapes are those of ``crates/llama_cpp/src/llama_cpp.rs`` in zed-industries/zed:
``ListModelsResponse.data[]`` of ``ModelEntry {id, meta.n_ctx, status.value}`` and
``Props {default_generation_settings.n_ctx, chat_template_caps, modalities.vision}``; the
assertions below read them exactly as that code does (``is_router_entry``, ``is_loaded``,
``context_length``, ``supports_tools``).
"""

from __future__ import annotations

from collections.abc import Callable

import anthropic
import pytest

from tests.dialect_gateway import Gateway


@pytest.fixture
def zed_gateway(make_gateway: Callable[..., Gateway[anthropic.Anthropic]]) -> Gateway[anthropic.Anthropic]:
    return make_gateway(
        catalogue=("scripted", "cold-model"), embedding=("embedder",), aliases={"fast": "scripted"}
    )


def test_the_listing_is_a_router_listing_with_load_states(zed_gateway: Gateway[anthropic.Anthropic]) -> None:
    listing = zed_gateway.http.get("/v1/models", headers={"accept": "application/json"}).json()
    entries = {entry["id"]: entry for entry in listing["data"]}
    assert all("value" in entry["status"] for entry in entries.values())  # is_router_entry
    assert entries["scripted"]["status"]["value"] == "loaded"
    assert entries["scripted"]["meta"]["n_ctx"] == 4096
    assert entries["cold-model"]["status"]["value"] == "unloaded"
    assert entries["fast"]["status"]["value"] == "loaded" and entries["fast"]["display_name"] == "fast"


def test_a_load_shows_in_the_next_listing(zed_gateway: Gateway[anthropic.Anthropic]) -> None:
    zed_gateway.http.post("/v1/messages", json={"model": "cold-model", "max_tokens": 4, "messages": [
        {"role": "user", "content": "hi"}]})  # fmt: skip
    listing = zed_gateway.http.get("/v1/models").json()
    status = {entry["id"]: entry["status"]["value"] for entry in listing["data"]}
    assert status["cold-model"] == "loaded"


def test_props_of_a_loaded_model(zed_gateway: Gateway[anthropic.Anthropic]) -> None:
    props = zed_gateway.http.get("/props", params={"model": "scripted"}).json()
    n_ctx = props["default_generation_settings"]["n_ctx"]
    caps = props["chat_template_caps"]
    assert n_ctx == 4096 and (caps["supports_tool_calls"] or caps["supports_tools"])
    assert props["modalities"]["vision"] is False
    alias = zed_gateway.http.get("/props", params={"model": "fast"})
    assert alias.status_code == 200


@pytest.mark.parametrize("query", [{"model": "nope"}, {"model": "embedder"}, {}])
def test_props_of_an_unknown_model_is_not_found(
    zed_gateway: Gateway[anthropic.Anthropic], query: dict[str, str]
) -> None:
    response = zed_gateway.http.get("/props", params=query)
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
