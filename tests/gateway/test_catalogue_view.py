"""The merged catalogue and the lookup of one model agree, on fake fleets (no processes)."""

from __future__ import annotations

import msgspec

from cortex_gateway.catalogue_view import merged_models, model_entry
from cortex_gateway.fleet import Fleet, Node, NodeModel
from cortex_kernel.config.schema import Catalogue, ModelProfile


def fleet_and_catalogue() -> tuple[Fleet, Catalogue]:
    a = Node(name="a", endpoint="http://a", up=True)
    a.models = {"chat": NodeModel(id="chat", state="ready", context_length=2048)}
    b = Node(name="b", endpoint="http://b", up=True)
    b.models = {
        "stray": NodeModel(id="stray", state="loading"),
        "chat": NodeModel(id="chat", state="loading"),
    }
    catalogue = Catalogue(
        models=[
            ModelProfile(id="chat", harness="t", context_length=4096, description="talks"),
            ModelProfile(id="embed", harness="t", task="embedding"),
        ],
        aliases={"fast": "chat", "dangling": "gone"},
    )
    return Fleet([a, b]), catalogue


def test_one_model_is_the_entry_the_listing_has() -> None:
    fleet, catalogue = fleet_and_catalogue()
    listed = {entry.id: entry for entry in merged_models(fleet, catalogue)}
    assert set(listed) == {"chat", "embed", "stray", "fast", "dangling"}
    for model_id, entry in listed.items():
        assert model_entry(fleet, catalogue, model_id) == entry, model_id
    assert model_entry(fleet, catalogue, "nowhere") is None


def test_entries_encode_as_the_openai_listing_with_our_fields() -> None:
    fleet, catalogue = fleet_and_catalogue()
    chat = msgspec.to_builtins(model_entry(fleet, catalogue, "chat"))
    assert list(chat)[:4] == ["id", "object", "created", "owned_by"]
    assert chat["loaded"] and chat["context_length"] == 2048 and chat["aliases"] == ["fast"]
    assert chat["locations"] == [{"node": "a", "state": "ready"}, {"node": "b", "state": "loading"}]
    assert chat["task"] == "chat" and chat["description"] == "talks" and "alias_of" not in chat
    stray = msgspec.to_builtins(model_entry(fleet, catalogue, "stray"))
    assert "task" not in stray and stray["context_length"] is None and not stray["loaded"]
    fast = model_entry(fleet, catalogue, "fast")
    assert fast is not None and fast.alias_of == "chat" and fast.aliases == [] and fast.serves_chat
    embed = model_entry(fleet, catalogue, "embed")
    assert embed is not None and not embed.serves_chat
