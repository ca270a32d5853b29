"""Reading JSON request bodies the same way everywhere.

Malformed JSON is a 400 (``invalid_json``), a field of the wrong type a 422 naming the field, a
body that is not JSON by content type a 415, one over the size limit a 413 — before any handler
logic runs. JSON nested deeper than the decoder recurses (msgspec raises ``RecursionError`` near
a thousand levels, which no real request needs) is malformed JSON too: a client's mistake, not a
server error.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message, Receive, Scope

from cortex_kernel.errors import BadRequest, CortexError, PayloadTooLarge, UnprocessableEntity
from cortex_kernel.validation import error_location

T = TypeVar("T")

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DRAIN_SLACK_BYTES = 1024 * 1024


def check_media_type(header: str) -> None:
    """Accept ``application/json`` (and ``+json`` types) as the ``Content-Type`` value ``header``;
    a request without the header is passed ``application/json``."""
    content_type = header.split(";")[0].strip().lower()
    if content_type not in ("application/json", "") and not content_type.endswith("+json"):
        raise CortexError(
            f"unsupported content type {content_type!r}; send application/json",
            status=415,
            type="invalid_request_error",
            code="unsupported_media_type",
        )


async def read_body(request: Request, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The raw body, refusing more than ``max_bytes`` without reading it all: :func:`receive_body`
    over the request's own stream.

    Reading through :meth:`Request.stream` rather than ``request.receive`` keeps Starlette's
    bookkeeping: a body another handler already read (``await request.body()``) is read again
    from its cache, and a second read of a consumed stream is Starlette's own error.
    """
    chunks = request.stream()

    async def receive() -> Message:
        try:
            return {"type": "http.request", "body": await anext(chunks), "more_body": True}
        except StopAsyncIteration:
            return {"type": "http.request", "body": b"", "more_body": False}

    return await receive_body(request.scope, receive, max_bytes)


async def receive_body(scope: Scope, receive: Receive, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The raw body straight from the ASGI ``scope`` and ``receive``, refusing more than
    ``max_bytes`` without reading it all; a client gone mid-upload is :class:`ClientDisconnect`.

    The one implementation of the checks: :func:`read_body` reads a :class:`Request` through it.
    The relay calls it directly, building no :class:`Request` headers object and no body stream;
    only for a handler that reads the body once and no other way."""
    content_type = length = None
    for name, value in scope["headers"]:  # ASGI header names are lower case
        if name == b"content-type":
            if content_type is None:
                content_type = value
        elif name == b"content-length" and length is None:
            length = value
    check_media_type("application/json" if content_type is None else content_type.decode("latin-1"))
    # A body far over the limit is refused unread; a modest overrun is read (and dropped) first,
    # so the client, still sending, gets a clean 413 instead of a reset connection.
    if length and length.isdigit() and int(length) > max_bytes + DRAIN_SLACK_BYTES:
        raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        if message["type"] != "http.request":
            continue
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes + DRAIN_SLACK_BYTES:
            break
        if size <= max_bytes:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if size > max_bytes:
        raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def error_param(exc: msgspec.ValidationError) -> str | None:
    """The dotted name of the field a validation error is about (``messages[0].role``)."""
    return error_location(exc).key or None


def too_deep() -> BadRequest:
    """The error for JSON nested deeper than any decoder here will follow."""
    return BadRequest("malformed JSON body: nested too deeply", code="invalid_json")


def decode_json(body: bytes, kind: type[T]) -> T:
    """Decode ``body`` into ``kind`` with the status codes described above."""
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise UnprocessableEntity(f"invalid request: {exc}", param=error_param(exc)) from exc
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed JSON body: {exc}", code="invalid_json") from exc
    except RecursionError:
        raise too_deep() from None


async def decode_body(request: Request, kind: type[T], max_bytes: int = DEFAULT_MAX_BYTES) -> T:
    """Read and decode a JSON body into ``kind``."""
    return decode_json(await read_body(request, max_bytes), kind)
