"""Bad input gets the documented status and envelope; the daemon lives on and leaks no slot."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.daemons import Daemon, http_json

pytestmark = pytest.mark.slow


def _raw(
    url: str, data: bytes, content_type: str = "application/json", token: str | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("content-type", content_type)
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _envelope(body: dict[str, Any]) -> dict[str, Any]:
    assert set(body) == {"error"}, body
    fields = set(body["error"]) - {"prompt_tokens", "context_length"}  # only for a too-long prompt
    assert fields == {"message", "type", "code", "param"}, body
    error: dict[str, Any] = body["error"]
    return error


def test_bad_requests_get_documented_errors(start_neuron: Callable[..., Daemon]) -> None:
    import json

    neuron = start_neuron('allow_models = ["tiny-*", "never-loaded"]\n')
    http_json("POST", f"{neuron.url}/models/load", {"model": "tiny-chat", "wait": True}, timeout=120)
    chat = f"{neuron.url}/v1/chat/completions"
    message = [{"role": "user", "content": "hi"}]

    status, raw = _raw(chat, b'{"model": "tiny-chat", "messages": [')
    assert status == 400 and _envelope(json.loads(raw))["code"] == "invalid_json"

    status, raw = _raw(chat, b"model=tiny-chat", content_type="application/x-www-form-urlencoded")
    assert status == 415 and _envelope(json.loads(raw))["code"] == "unsupported_media_type"

    cases = [
        ({"messages": message}, 422, "invalid_type", "model"),
        ({"model": "tiny-chat", "messages": "hi"}, 422, "invalid_type", "messages"),
        ({"model": "no-such-model", "messages": message}, 404, "model_not_found", None),
        ({"model": "never-loaded", "messages": message}, 404, "model_not_loaded", None),
        ({"model": "tiny-chat", "messages": message, "max_tokens": -5}, 400, "invalid_value", "max_tokens"),
        ({"model": "tiny-chat", "messages": message, "temperature": 9}, 400, "invalid_value", "temperature"),
        ({"model": "tiny-chat", "messages": []}, 400, "invalid_value", "messages"),
    ]
    for body, want_status, want_code, want_param in cases:
        status, reply, _ = http_json("POST", chat, body)
        error = _envelope(reply)
        assert (status, error["code"]) == (want_status, want_code), (body, reply)
        if want_param:
            assert error["param"] == want_param

    long_prompt = [{"role": "user", "content": "word " * 60000}]
    for stream in (False, True):
        status, reply, _ = http_json(
            "POST", chat, {"model": "tiny-chat", "messages": long_prompt, "stream": stream}
        )
        error = _envelope(reply)
        assert (status, error["code"]) == (400, "context_length_exceeded"), reply
        numbers = [int(token) for token in error["message"].replace(",", " ").split() if token.isdigit()]
        assert len(numbers) >= 2  # the limit and the prompt's size
        assert error["prompt_tokens"] > error["context_length"] in numbers, reply  # structured too

    status, reply, _ = http_json(
        "POST", f"{neuron.url}/models/load", {"profile": {"id": "tiny-x", "harness": "nope"}}
    )
    assert (status, _envelope(reply)["code"]) == (400, "unknown_harness")
    status, reply, _ = http_json(
        "POST", f"{neuron.url}/models/load", {"profile": {"id": "evil/model", "harness": "transformers"}}
    )
    assert (status, _envelope(reply)["code"]) == (403, "model_not_allowed")
    status, reply, _ = http_json(
        "POST",
        f"{neuron.url}/models/load",
        {"profile": {"id": "tiny-escape", "harness": "transformers", "source": "/etc"}},
    )
    assert (status, _envelope(reply)["code"]) == (403, "source_not_allowed")
    status, reply, _ = http_json("POST", f"{neuron.url}/models/load", {"modle": "tiny-chat"})
    assert status == 422
    status, reply, _ = http_json("POST", f"{neuron.url}/models/sleep", {"model": "never-loaded"})
    assert (status, _envelope(reply)["code"]) == (404, "model_not_loaded")

    assert neuron.alive()
    state = http_json("GET", f"{neuron.url}/health")[1]["models"]["tiny-chat"]
    assert state["in_flight"] == 0 and state["queued"] == 0
    # Still serving.
    status, reply, _ = http_json("POST", chat, {"model": "tiny-chat", "messages": message, "max_tokens": 2})
    assert status == 200 and reply["usage"]["completion_tokens"] >= 1


def test_token_is_required_everywhere_but_health(start_neuron: Callable[..., Daemon]) -> None:
    neuron = start_neuron(token="s3cret")
    assert http_json("GET", f"{neuron.url}/health")[0] == 200
    for method, path in (("GET", "/models"), ("GET", "/discovery"), ("POST", "/v1/chat/completions")):
        status, reply, _ = http_json(method, neuron.url + path, {} if method == "POST" else None)
        assert status == 401 and _envelope(reply)["code"] == "invalid_api_key", path
    status, reply, _ = http_json("GET", f"{neuron.url}/models", token="wrong")
    assert status == 401
    assert http_json("GET", f"{neuron.url}/models", token="s3cret")[0] == 200


def test_discovery_on_a_host_without_gpus_is_not_an_error(start_neuron: Callable[..., Daemon]) -> None:
    neuron = start_neuron()
    status, body, _ = http_json("GET", f"{neuron.url}/discovery")
    assert status == 200
    assert body["hostname"] and body["os"] == "Linux"
    assert "transformers" in body["harnesses"]
    if not body["devices"]:
        assert body["gpu_unavailable_reason"]


def test_metrics_endpoint_exports_neuron_series(start_neuron: Callable[..., Daemon]) -> None:
    neuron = start_neuron()
    http_json("POST", f"{neuron.url}/models/load", {"model": "tiny-chat", "wait": True}, timeout=120)
    http_json(
        "POST",
        f"{neuron.url}/v1/chat/completions",
        {"model": "tiny-chat", "messages": [{"role": "user", "content": "x"}], "max_tokens": 3},
    )
    with urllib.request.urlopen(f"{neuron.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'cortex_neuron_requests_total{endpoint="chat",model="tiny-chat",status="2xx"} 1.0' in text
    assert 'cortex_neuron_model_state{model="tiny-chat",state="ready"} 1.0' in text
