"""Reading routing hints: headers, body keys and the prefix fingerprint, and what is ignored."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from starlette.types import Receive, Scope, Send

from cortex_gateway.proxy import routing_fields
from cortex_gateway.route_hints import HintReader, RoutingHeaders, body_key, fingerprint, usable_key
from cortex_kernel.routing import RouteHints


def _chat(*messages: dict[str, Any], tools: list[dict[str, Any]] | None = None) -> bytes:
    body: dict[str, Any] = {"model": "m", "messages": list(messages)}
    if tools is not None:
        body["tools"] = tools
    return msgspec.json.encode(body)


SYSTEM = {"role": "system", "content": "You are a coding agent." * 20}


def _print(body: bytes, limit: int = 4096) -> str | None:
    fields = routing_fields(body)
    return fingerprint(fields.messages, fields.tools, limit)


def test_fingerprint_is_shared_by_the_turns_of_one_conversation() -> None:
    turn1 = _chat(SYSTEM, {"role": "user", "content": "fix the bug"})
    turn2 = _chat(
        SYSTEM,
        {"role": "user", "content": "fix the bug"},
        {"role": "assistant", "content": "done"},
        {"role": "user", "content": "thanks"},
    )
    other = _chat(SYSTEM, {"role": "user", "content": "write docs"})
    assert _print(turn1) == _print(turn2) != _print(other)
    # Bounded: past `limit` bytes nothing changes it.
    assert _print(turn1, limit=64) == _print(other, limit=64)


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "m", "messages": "not a list"}',
        b'{"model": "m", "messages": [1, "x", {"role": 5}]}',
        b'{"model": "m", "messages": []}',
        b'{"model": "m", "prompt": "completions have no messages"}',
    ],
)
def test_fingerprint_of_odd_bodies_is_none_or_a_digest_never_an_error(body: bytes) -> None:
    value = _print(body)
    assert value is None or value.startswith("fp:")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("sess-1", "sess-1"),
        ("", None),
        ("x" * 257, None),
        ("bad\x00byte", None),
        ("naïve", None),
        ("line\nbreak", None),
    ],
)
def test_only_short_printable_ascii_keys_are_used(value: str, expected: str | None) -> None:
    assert usable_key(value) == expected


def test_body_keys_of_the_wrong_type_are_ignored() -> None:
    fields = routing_fields(b'{"model": "m", "prompt_cache_key": 42, "user": {"id": 1}}')
    assert body_key(fields.prompt_cache_key) is None and body_key(fields.user) is None
    fields = routing_fields(b'{"model": "m", "prompt_cache_key": "pck", "user": "u"}')
    assert (body_key(fields.prompt_cache_key), body_key(fields.user)) == ("pck", "u")


def _through_headers(
    headers: list[tuple[bytes, bytes]], hints: RouteHints | None, body: bytes | None
) -> RouteHints:
    """Resolve ``hints`` inside a request that carried ``headers`` (as the gateway does)."""
    reader = HintReader(4096)
    seen: list[RouteHints] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(reader.resolve(hints, body))

    middleware = RoutingHeaders(
        app,
        session_headers=["x-claude-code-session-id", "x-session-id"],
        class_header="x-claude-code-request-class",
    )
    asyncio.run(middleware({"type": "http", "headers": headers}, None, None))  # type: ignore[arg-type]
    return seen[0]


def test_the_documented_order_header_then_prompt_cache_key_then_user_then_fingerprint() -> None:
    body = _chat(SYSTEM, {"role": "user", "content": "hi"})
    both = RouteHints(prompt_cache_key="pck", session_key="user-1")
    assert _through_headers([(b"x-session-id", b"hdr")], both, body).session_key == "hdr"
    assert _through_headers([], both, body).session_key == "pck"
    assert _through_headers([], RouteHints(session_key="user-1"), body).session_key == "user-1"
    keyless = _through_headers([], None, body)
    assert keyless.session_key is None and keyless.fingerprint == _print(body)
    # The first configured header wins over the second.
    order = [(b"x-session-id", b"second"), (b"x-claude-code-session-id", b"first")]
    assert _through_headers(order, None, body).session_key == "first"


@pytest.mark.parametrize("value", [b"x" * 300, b"bad\x7fvalue", b"caf\xe9", b""])
def test_a_malformed_or_over_long_session_header_falls_back_to_the_next_source(value: bytes) -> None:
    body = _chat(SYSTEM, {"role": "user", "content": "hi"})
    headers = [(b"x-claude-code-session-id", value), (b"x-session-id", b"good")]
    assert _through_headers(headers, None, body).session_key == "good"
    resolved = _through_headers(
        [(b"x-claude-code-session-id", value)], RouteHints(prompt_cache_key="pck"), body
    )
    assert resolved.session_key == "pck"


@pytest.mark.parametrize(
    "value, expected", [(b"subagent", "subagent"), (b" Compaction ", "compaction"), (b"urgent", None)]
)
def test_request_class_from_its_header_unknown_is_none(value: bytes, expected: str | None) -> None:
    resolved = _through_headers([(b"x-claude-code-request-class", value)], None, None)
    assert resolved.request_class == expected
