"""``/v1/models`` in both shapes, ``/v1/models/{id}``, and ``/v1/messages/count_tokens``."""

from __future__ import annotations

from collections.abc import Callable

import anthropic
import pytest

from tests.anthropic.headers import ANTHROPIC
from tests.anthropic.scripted import Json, openai_error
from tests.anthropic.sse import USER_HI
from tests.dialect_gateway import Gateway


@pytest.fixture
def catalogue_gateway(
    make_gateway: Callable[..., Gateway[anthropic.Anthropic]],
) -> Gateway[anthropic.Anthropic]:
    return make_gateway(
        catalogue=("scripted", "cold-model"), embedding=("embedder",), aliases={"claude-x": "scripted"}
    )


def test_the_sdk_lists_chat_models_in_the_anthropic_shape(
    catalogue_gateway: Gateway[anthropic.Anthropic],
) -> None:
    listed = catalogue_gateway.client.models.list()
    assert [model.id for model in listed.data] == ["scripted", "cold-model", "claude-x"]
    first = listed.data[0]
    assert first.type == "model" and first.display_name == "scripted"
    assert first.created_at.year >= 2024
    raw = catalogue_gateway.http.get("/v1/models", headers=ANTHROPIC).json()
    assert raw["has_more"] is False and raw["first_id"] == "scripted" and raw["last_id"] == "claude-x"
    assert raw["data"][0]["max_input_tokens"] == 4096


def test_pagination(catalogue_gateway: Gateway[anthropic.Anthropic]) -> None:
    http = catalogue_gateway.http
    page = http.get("/v1/models?limit=2", headers=ANTHROPIC).json()
    assert [m["id"] for m in page["data"]] == ["scripted", "cold-model"] and page["has_more"] is True
    rest = http.get("/v1/models?limit=2&after_id=cold-model", headers=ANTHROPIC).json()
    assert [m["id"] for m in rest["data"]] == ["claude-x"] and rest["has_more"] is False
    back = http.get("/v1/models?limit=1&before_id=claude-x", headers=ANTHROPIC).json()
    assert [m["id"] for m in back["data"]] == ["cold-model"] and back["has_more"] is True
    bad = http.get("/v1/models?limit=0", headers=ANTHROPIC)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_openai_clients_still_get_the_openai_shape(catalogue_gateway: Gateway[anthropic.Anthropic]) -> None:
    listing = catalogue_gateway.http.get("/v1/models").json()
    assert listing["object"] == "list" and listing["data"][0]["object"] == "model"
    one = catalogue_gateway.http.get("/v1/models/scripted").json()
    assert one["id"] == "scripted" and one["object"] == "model"
    missing = catalogue_gateway.http.get("/v1/models/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_the_sdk_retrieves_one_model_and_a_missing_one_is_not_found(
    catalogue_gateway: Gateway[anthropic.Anthropic],
) -> None:
    model = catalogue_gateway.client.models.retrieve("cold-model")
    assert model.id == "cold-model" and model.type == "model"
    with pytest.raises(anthropic.NotFoundError) as caught:
        catalogue_gateway.client.models.retrieve("embedder")
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "not_found_error"


def test_count_tokens_uses_the_neurons_count_of_the_same_prompt(
    gateway: Gateway[anthropic.Anthropic],
) -> None:
    gateway.neuron.count_replies.append(Json({"prompt_tokens": 321, "context_length": 4096}))
    counted = gateway.client.messages.count_tokens(
        model="scripted",
        system=[{"type": "text", "text": "Be brief."}],
        messages=USER_HI,
        tools=[{"name": "t", "input_schema": {"type": "object"}}],
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    assert counted.input_tokens == 321
    sent = gateway.neuron.bodies("/v1/count_tokens")[-1]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["tools"][0]["function"]["name"] == "t"
    assert sent["chat_template_kwargs"]["enable_thinking"] is True
    assert "stream" not in sent and "max_completion_tokens" not in sent
    assert not gateway.neuron.bodies()  # nothing was generated


def test_count_tokens_takes_the_beta_query_and_reports_errors_in_the_envelope(
    gateway: Gateway[anthropic.Anthropic],
) -> None:
    ok = gateway.http.post(
        "/v1/messages/count_tokens?beta=true", json={"model": "scripted", "messages": USER_HI}
    )
    assert ok.status_code == 200 and ok.json()["input_tokens"] > 0
    gateway.neuron.count_replies.append(openai_error(503, "loading", "model_loading", "overloaded_error"))
    busy = gateway.http.post("/v1/messages/count_tokens", json={"model": "scripted", "messages": USER_HI})
    assert busy.status_code == 529 and busy.json()["error"]["type"] == "overloaded_error"
    bad = gateway.http.post("/v1/messages/count_tokens", json={"model": "scripted"})
    assert bad.status_code == 400 and "messages" in bad.json()["error"]["message"]
