"""Gateway error paths: dialect-correct 4xx, auth, disconnects; in-flight counters back to zero."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator

import openai
import pytest

from cortex_kernel.keys import key_digest
from cortex_kernel.testing.scripted_neuron import ScriptedNeuron, openai_error
from tests.daemons import Daemon, LineStream, endless_stream, http_json

pytestmark = pytest.mark.slow

CLIENT_KEY = "client-secret"
ADMIN_KEY = "admin-secret"


def _post_raw(
    url: str, data: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("content-type", content_type)
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


SECURED = (
    'neuron_token = "neuron-token"\nmax_body_bytes = 4096\n\n[auth]\nrequire_api_key = true\n'
    f'api_keys = ["{key_digest(CLIENT_KEY)}"]\nadmin_keys = ["{key_digest(ADMIN_KEY)}"]\n'
)


@pytest.fixture
def secured(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon]
) -> tuple[Daemon, Daemon]:
    """A gateway with client and admin keys over a real neuron that wants its own token."""
    neuron = start_neuron(token="neuron-token")
    return start_gateway({"n1": neuron}, extra=SECURED), neuron


@pytest.fixture
def secured_over_scripted(start_gateway: Callable[..., Daemon]) -> Iterator[tuple[Daemon, ScriptedNeuron]]:
    """The same gateway over the scripted neuron double: for what the gateway alone decides."""
    neuron = ScriptedNeuron(ready=()).start()
    try:
        yield start_gateway({"n1": neuron}, extra=SECURED), neuron
    finally:
        neuron.stop()


def _in_flight_zero(gateway: Daemon, neuron: Daemon | ScriptedNeuron) -> None:
    fleet = http_json("GET", f"{gateway.url}/admin/fleet", token=ADMIN_KEY)[1]
    assert all(m["in_flight"] == 0 for n in fleet["nodes"] for m in n["models"]), fleet
    models = http_json("GET", f"{neuron.url}/health")[1]["models"]
    assert all(m["in_flight"] == 0 and m["queued"] == 0 for m in models.values()), models


def test_bad_input_gets_openai_4xx_and_leaks_nothing(
    secured_over_scripted: tuple[Daemon, ScriptedNeuron],
) -> None:
    import json

    gateway, neuron = secured_over_scripted
    chat = f"{gateway.url}/v1/chat/completions"
    auth = {"authorization": f"Bearer {CLIENT_KEY}"}
    good = {"model": "tiny-chat", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
    assert _post_raw(chat, json.dumps(good).encode(), headers=auth)[0] == 200

    cases = [
        (b'{"model": "tiny-chat", "messages": [', "application/json", 400, "invalid_json"),
        (b'{"messages": []}', "application/json", 400, "missing_model"),
        (b'{"model": "ghost", "messages": []}', "application/json", 404, "model_not_found"),
        (b"model=tiny-chat", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (
            b'{"model": "tiny-chat", "messages": [], "pad": "' + b"x" * 5000 + b'"}',
            "application/json",
            413,
            "request_too_large",
        ),
        # The one the neuron refuses (tests/neuron checks that it does): passed through as it is.
        (json.dumps({**good, "max_tokens": -1}).encode(), "application/json", 400, "invalid_value"),
    ]
    neuron.then(openai_error(400, "max_tokens must be at least 1", "invalid_value"))
    for data, content_type, want_status, want_code in cases:
        status, raw, _ = _post_raw(chat, data, content_type, headers=auth)
        body = json.loads(raw)
        assert (status, body["error"]["code"]) == (want_status, want_code), (data[:60], body)
        assert set(body["error"]) == {"message", "type", "code", "param"}
    assert gateway.alive() and len(neuron.bodies()) == 2  # the good request and the refused one
    _in_flight_zero(gateway, neuron)


def test_keys_are_checked_and_client_credentials_never_reach_neurons(secured: tuple[Daemon, Daemon]) -> None:
    gateway, neuron = secured
    body = {"model": "tiny-chat", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
    chat = f"{gateway.url}/v1/chat/completions"
    status, reply, _ = http_json("POST", chat, body)
    assert status == 401 and reply["error"]["type"] == "authentication_error"
    status, reply, _ = http_json("POST", chat, body, token="wrong")
    assert status == 401
    # The neuron wants its own token; the client's key works only because the gateway presents it.
    status, reply, _ = http_json("POST", chat, body, token=CLIENT_KEY)
    assert status == 200
    assert http_json("POST", f"{neuron.url}/v1/chat/completions", body, token=CLIENT_KEY)[0] == 401
    import json

    status, raw, _ = _post_raw(chat, json.dumps(body).encode(), headers={"x-api-key": CLIENT_KEY})
    assert status == 200
    # Anthropic callers get Anthropic's envelope.
    status, raw, _ = _post_raw(
        f"{gateway.url}/v1/messages", b"{}", headers={"anthropic-version": "2023-06-01"}
    )
    assert status == 401
    refusal = json.loads(raw)
    assert refusal["type"] == "error" and refusal["request_id"].startswith("req_")
    assert refusal["error"] == {"type": "authentication_error", "message": "missing or unknown API key"}
    # The admin surface needs the admin key, and the client key is not one.
    assert http_json("GET", f"{gateway.url}/admin/fleet")[0] == 401
    assert http_json("GET", f"{gateway.url}/admin/fleet", token=CLIENT_KEY)[0] == 401
    assert http_json("GET", f"{gateway.url}/admin/fleet", token=ADMIN_KEY)[0] == 200
    assert http_json("GET", f"{gateway.url}/health")[0] == 200  # public


def test_client_disconnect_cancels_the_upstream_generation(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon]
) -> None:
    neuron = start_neuron()
    gateway = start_gateway({"n1": neuron})
    body = endless_stream("tiny-chat")
    with LineStream(f"{gateway.url}/v1/chat/completions", "POST", body, timeout=120) as stream:
        lines = iter(stream)
        next(lines)
        next(lines)
        assert http_json("GET", f"{neuron.url}/health")[1]["models"]["tiny-chat"]["in_flight"] == 1
    deadline = time.monotonic() + 5
    while http_json("GET", f"{neuron.url}/health")[1]["models"]["tiny-chat"]["in_flight"]:
        assert time.monotonic() < deadline, "the neuron kept generating for a client that left"
        time.sleep(0.01)
    # The gateway's view catches up at its next poll of the neuron.
    deadline = time.monotonic() + 10
    while http_json("GET", f"{gateway.url}/admin/fleet")[1]["nodes"][0]["models"][0]["in_flight"]:
        assert time.monotonic() < deadline, "the gateway still counts the abandoned request"
        time.sleep(0.1)


def test_a_neuron_dying_mid_stream_is_an_error_event(
    start_neuron: Callable[..., Daemon],
    start_gateway: Callable[..., Daemon],
    openai_client: Callable[..., openai.OpenAI],
) -> None:
    neuron = start_neuron()
    gateway = start_gateway({"n1": neuron})
    client = openai_client(f"{gateway.url}/v1")
    stream = client.chat.completions.create(
        model="tiny-chat",
        messages=[{"role": "user", "content": "go"}],
        max_tokens=30000,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    received = 0
    with pytest.raises(openai.APIError, match="stopped answering") as caught:
        for _ in stream:
            received += 1
            if received == 3:
                neuron.kill()
    assert received >= 3
    assert "node n1" in caught.value.message
    status, health = http_json("GET", f"{gateway.url}/health")[:2]
    assert status == 200 and health["nodes"]["total"] == 1  # the gateway carries on
    # The gateway's own count drops at once; the neuron's last report is dropped when it is down.
    deadline = time.monotonic() + 15
    while any(
        m["in_flight"]
        for n in http_json("GET", f"{gateway.url}/admin/fleet")[1]["nodes"]
        for m in n["models"]
    ):
        assert time.monotonic() < deadline, "the gateway still counts the broken request"
        time.sleep(0.1)
