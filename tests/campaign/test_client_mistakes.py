"""A client's mistake is a 4xx in its own dialect's envelope on every JSON route, never a 500.

Regression tests for what the hostile-input campaign found (issue 13): JSON nested 1,000+ levels
deep gave 500 with a ``RecursionError`` traceback on every JSON route of both daemons, and
through an alias a bad value elsewhere in the body (``1e99999``, an invalid UTF-8 byte) gave 500
from the proxy's re-decode of the body.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.campaign.client import Answer, build, send
from tests.campaign.fleet import ADMIN_KEY, ALIAS, CHAT, CLIENT_KEY, EMBED, NEURON_TOKEN, Fleet

pytestmark = pytest.mark.slow

DEEP = b"[" * 5000 + b"]" * 5000
DEEP_OBJECT = b'{"a":' * 3000 + b"1" + b"}" * 3000

# (daemon, path, a body prefix the deep value is appended to as the value of an unknown field)
GATEWAY_ROUTES = [
    ("/v1/chat/completions", f'{{"model":"{CHAT}","messages":[{{"role":"user","content":"x"}}],"x":'),
    ("/v1/completions", f'{{"model":"{CHAT}","prompt":"x","x":'),
    ("/v1/embeddings", f'{{"model":"{EMBED}","input":"x","x":'),
    ("/v1/messages", f'{{"model":"{CHAT}","max_tokens":2,"messages":[{{"role":"user","content":"x"}}],"x":'),
    ("/v1/messages/count_tokens", f'{{"model":"{CHAT}","messages":[{{"role":"user","content":"x"}}],"x":'),
    ("/v1/responses", f'{{"model":"{CHAT}","input":"x","x":'),
    ("/admin/models/load", f'{{"model":"{CHAT}","x":'),
    ("/admin/models/unload", f'{{"model":"{CHAT}","x":'),
    ("/admin/nodes/neuron1/drain", '{"x":'),
]
NEURON_ROUTES = [
    ("/v1/chat/completions", f'{{"model":"{CHAT}","messages":[{{"role":"user","content":"x"}}],"x":'),
    ("/v1/completions", f'{{"model":"{CHAT}","prompt":"x","x":'),
    ("/v1/embeddings", f'{{"model":"{EMBED}","input":"x","x":'),
    ("/v1/count_tokens", f'{{"model":"{CHAT}","messages":[{{"role":"user","content":"x"}}],"x":'),
    ("/models/load", f'{{"model":"{CHAT}","x":'),
    ("/models/unload", '{"model":"never-loaded","x":'),
    ("/models/sleep", '{"model":"never-loaded","x":'),
    ("/models/wake", '{"model":"never-loaded","x":'),
]


def post(fleet: Fleet, daemon: str, path: str, body: bytes) -> Answer:
    port = fleet.gateway.port if daemon == "gateway" else fleet.neurons[0].port
    key = ADMIN_KEY if path.startswith("/admin") else CLIENT_KEY if daemon == "gateway" else NEURON_TOKEN
    headers = [("Content-Type", "application/json"), ("Authorization", f"Bearer {key}"), ("x-api-key", key)]
    return asyncio.run(send(port, build("POST", path, headers, body), limit_s=60))


def assert_client_error(answer: Answer, path: str) -> None:
    assert answer.status is not None and 400 <= answer.status < 500, (answer.status, answer.body[:300])
    body = answer.json()
    if path.startswith("/v1/messages"):
        assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}, body
    else:
        assert set(body["error"]) >= {"message", "type", "code"}, body


def traceback_count(fleet: Fleet) -> int:
    return sum(fleet.tracebacks().values())


@pytest.mark.parametrize(
    "daemon,path,prefix", [("gateway", *r) for r in GATEWAY_ROUTES] + [("neuron", *r) for r in NEURON_ROUTES]
)
@pytest.mark.parametrize("deep", [DEEP, DEEP_OBJECT], ids=["array", "object"])
def test_deep_nesting_is_a_client_error(
    fleet: Fleet, daemon: str, path: str, prefix: str, deep: bytes
) -> None:
    before = traceback_count(fleet)
    for body in (deep, prefix.encode() + deep + b"}"):
        assert_client_error(post(fleet, daemon, path, body), path)
    assert traceback_count(fleet) == before, fleet.tracebacks()
    assert all(fleet.alive().values())


@pytest.mark.parametrize(
    "bad",
    [b"1e99999", b"-1e99999", b'"\xff\xfe"', b'{"k":"\xc3\x28"}', b"[" * 5000 + b"]" * 5000],
    ids=["huge-float", "huge-negative", "invalid-utf8", "invalid-utf8-nested", "deep"],
)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_a_bad_value_through_an_alias_is_answered_as_without_one(fleet: Fleet, path: str, bad: bytes) -> None:
    """The alias is rewritten without judging the other fields: the answer is the one the concrete
    model name gets (the neuron ignores an unknown field), and never a 5xx."""
    before = traceback_count(fleet)
    tail = b',"messages":[{"role":"user","content":"x"}]}' if "chat" in path else b',"prompt":"x"}'
    answers = {}
    for name in (ALIAS, CHAT):
        head = f'{{"model":"{name}","max_tokens":2,"unrelated":'.encode()
        answers[name] = post(fleet, "gateway", path, head + bad + tail)
    assert answers[ALIAS].status == answers[CHAT].status, (answers[ALIAS].body, answers[CHAT].body)
    status = answers[ALIAS].status
    assert status is not None and status < 500, answers[ALIAS].body
    if status >= 400:
        assert_client_error(answers[ALIAS], path)
    assert traceback_count(fleet) == before, fleet.tracebacks()


@pytest.mark.parametrize("daemon", ["gateway", "neuron"])
def test_deeply_nested_tool_call_arguments_are_a_client_error_or_answered(fleet: Fleet, daemon: str) -> None:
    """Tool-call arguments arrive as a JSON string the harness decodes for the chat template."""
    before = traceback_count(fleet)
    for depth in (5000, 900):
        arguments = "[" * depth + "]" * depth
        call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
        messages = [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ]
        import json

        body = json.dumps({"model": CHAT, "max_tokens": 2, "messages": messages}).encode()
        answer = post(fleet, daemon, "/v1/chat/completions", body)
        assert answer.status is not None and answer.status < 500, (depth, answer.body[:300])
    assert traceback_count(fleet) == before, fleet.tracebacks()


@pytest.mark.parametrize("daemon", ["gateway", "neuron"])
@pytest.mark.parametrize("where", ["tool-parameters", "response-format", "content"])
def test_nesting_just_under_the_decoders_limit_is_not_a_server_error(
    fleet: Fleet, daemon: str, where: str
) -> None:
    """Deep, but not too deep to decode: free-form fields reach the template and the harness."""
    import json

    before = traceback_count(fleet)
    for depth in (400, 900):
        deep = json.loads("[" * depth + "]" * depth)
        body: dict[str, Any] = {
            "model": CHAT,
            "max_tokens": 2,
            "messages": [{"role": "user", "content": "x"}],
        }
        if where == "tool-parameters":
            body["tools"] = [{"type": "function", "function": {"name": "f", "parameters": {"d": deep}}}]
        elif where == "response-format":
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "s", "schema": deep}}
        else:
            body["messages"][0]["content"] = [{"type": "text", "text": "x", "extra": deep}]
        answer = post(fleet, daemon, "/v1/chat/completions", json.dumps(body).encode())
        assert answer.status is not None and answer.status < 500, (depth, answer.body[:300])
    assert traceback_count(fleet) == before, fleet.tracebacks()


def test_an_alias_still_reaches_its_model_with_the_rest_of_the_body_intact(fleet: Fleet) -> None:
    body = (
        f'{{"messages":[{{"role":"user","content":"x"}}],"model":"{ALIAS}","max_tokens":3,'
        '"temperature":0,"ignore_eos":true,"user":"caf\\u00e9"}'
    ).encode()
    answer = post(fleet, "gateway", "/v1/chat/completions", body)
    assert answer.status == 200, answer.body
    reply = answer.json()
    assert reply["model"] == CHAT
    assert reply["usage"]["completion_tokens"] <= 3


async def _upload_then_leave(port: int, path: str, key: str) -> None:
    head = build("POST", path, [("Content-Type", "application/json"), ("Authorization", f"Bearer {key}")])
    head = head.replace(b"Content-Length: 0", b"Content-Length: 100000")
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + b'{"model":"tiny-chat","messages":[')
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await writer.wait_closed()


@pytest.mark.parametrize(
    "daemon,path",
    [
        ("gateway", "/v1/chat/completions"),
        ("gateway", "/v1/messages"),
        ("gateway", "/admin/models/load"),
        ("neuron", "/v1/chat/completions"),
        ("neuron", "/models/load"),
    ],
)
def test_a_client_leaving_during_its_upload_logs_no_traceback(fleet: Fleet, daemon: str, path: str) -> None:
    """Issue 13: each such disconnect was logged as an unhandled error with two tracebacks."""
    import time

    port = fleet.gateway.port if daemon == "gateway" else fleet.neurons[0].port
    key = ADMIN_KEY if path.startswith("/admin") else CLIENT_KEY if daemon == "gateway" else NEURON_TOKEN
    before = fleet.tracebacks()
    for _ in range(3):
        asyncio.run(_upload_then_leave(port, path, key))
    time.sleep(0.5)
    assert fleet.tracebacks() == before
    assert all(fleet.alive().values())


def test_a_waited_load_cancelled_by_an_unload_is_a_conflict_not_an_empty_500(fleet: Fleet) -> None:
    """Found by the soak: ``wait: true`` on a load that an unload cancels answered an empty 500."""
    headers = [("Content-Type", "application/json"), ("Authorization", f"Bearer {NEURON_TOKEN}")]
    port = fleet.neurons[0].port
    load = build("POST", "/models/load", headers, b'{"model":"never-loaded","wait":true}')
    unload = build("POST", "/models/unload", headers, b'{"model":"never-loaded"}')

    listing = build("GET", "/models", headers)

    async def state() -> str | None:
        models = (await send(port, listing)).json()["data"]
        return next((m["state"] for m in models if m["id"] == "never-loaded"), None)

    async def race() -> tuple[Answer, Answer]:
        # Unload while the load is surely in progress: its record says "loading" (a load of the
        # tiny model takes far longer than one poll), not after a fixed sleep that a fast load
        # or a slow machine can miss.
        waiting = asyncio.ensure_future(send(port, load))
        for _ in range(5000):
            if waiting.done() or await state() == "loading":
                break
        unloaded = await send(port, unload)
        return await waiting, unloaded

    statuses = []
    for _ in range(3):
        loaded, unloaded = asyncio.run(race())
        assert unloaded.status == 200, unloaded.body
        assert loaded.status in (200, 409), (loaded.status, loaded.body)
        if loaded.status == 409:
            assert loaded.json()["error"]["code"] == "load_cancelled"
        statuses.append(loaded.status)
    assert 409 in statuses, statuses
    assert all(fleet.alive().values())
