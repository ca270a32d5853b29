"""The relay's body reader straight from ASGI gives what ``read_body`` gives through Starlette's
request: the same bytes, and the same error (type, status and code) for every refusal."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import ClientDisconnect, Request

from cortex_kernel.bodies import read_body, receive_body
from cortex_kernel.errors import CortexError

LIMIT = 64
SLACK = 1024 * 1024


def asgi(headers: list[tuple[bytes, bytes]], pieces: list[bytes], disconnect: bool) -> tuple[Any, Any]:
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": piece, "more_body": i + 1 < len(pieces) or disconnect}
        for i, piece in enumerate(pieces)
    ]
    messages.append({"type": "http.disconnect"})

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return scope, receive


async def outcome(reader: str, headers: list[tuple[bytes, bytes]], pieces: list[bytes], gone: bool) -> Any:
    scope, receive = asgi(headers, pieces, gone)
    try:
        if reader == "request":
            return await read_body(Request(scope, receive), LIMIT)
        return await receive_body(scope, receive, LIMIT)
    except CortexError as exc:
        return (type(exc).__name__, exc.status, exc.code, exc.message)
    except ClientDisconnect:
        return "disconnect"


CONTENT_TYPES = [
    None,
    b"application/json",
    b"Application/JSON; charset=utf-8",
    b"application/vnd.api+json",
    b"",
    b"text/plain",
    b" application/json ;x",
]
LENGTHS = [None, b"10", b"100", b"999999999", b"abc", b"", str(LIMIT + SLACK + 1).encode()]


@settings(max_examples=200, deadline=None)
@given(
    content_type=st.sampled_from(CONTENT_TYPES),
    second_type=st.sampled_from([None, b"text/plain"]),
    length=st.sampled_from(LENGTHS),
    pieces=st.lists(st.binary(max_size=40), max_size=5),
    gone=st.booleans(),
)
async def test_the_same_bytes_and_the_same_refusals(
    content_type: bytes | None,
    second_type: bytes | None,
    length: bytes | None,
    pieces: list[bytes],
    gone: bool,
) -> None:
    headers = [(b"host", b"x")]
    if content_type is not None:
        headers.append((b"content-type", content_type))
    if second_type is not None:
        headers.append((b"content-type", second_type))
    if length is not None:
        headers.append((b"content-length", length))
    expected = await outcome("request", headers, pieces or [b""], gone)
    assert await outcome("receive", headers, pieces or [b""], gone) == expected


@pytest.mark.parametrize("size", [LIMIT, LIMIT + 1, LIMIT + SLACK + 5])
async def test_the_limit(size: int) -> None:
    pieces = [b"x" * 10] * (size // 10) + [b"x" * (size % 10)]
    expected = await outcome("request", [], pieces, False)
    assert await outcome("receive", [], pieces, False) == expected
    assert (expected == b"x" * size) == (size <= LIMIT)


async def test_read_body_after_the_body_was_read_gives_it_again() -> None:
    """The admin drain route peeks with ``await request.body()`` before decoding: the cached body."""
    scope, receive = asgi([], [b'{"a":', b"1}"], False)
    request = Request(scope, receive)
    assert await request.body() == b'{"a":1}'
    assert await read_body(request, LIMIT) == b'{"a":1}'
    with pytest.raises(CortexError, match="larger than 4 bytes"):
        await read_body(request, 4)
