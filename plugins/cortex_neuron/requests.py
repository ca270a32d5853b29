"""Decoding request bodies: malformed JSON is a 400, a wrong field type a 422, both enveloped."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

import msgspec
from starlette.requests import Request

from cortex_kernel.errors import BadRequest, CortexError, PayloadTooLarge, UnprocessableEntity

T = TypeVar("T")

MAX_BODY_BYTES = 64 * 1024 * 1024


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def decode_body(request: Request, kind: type[T]) -> T:
    """Read and decode a JSON body into ``kind``."""
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type not in ("application/json", "") and not content_type.endswith("+json"):
        raise CortexError(
            f"unsupported content type {content_type!r}; send application/json",
            status=415,
            type="invalid_request_error",
            code="unsupported_media_type",
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body is larger than {MAX_BODY_BYTES} bytes")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `")
        param = path.rstrip("`").removeprefix("$.") or None
        raise UnprocessableEntity(f"invalid request: {message}", param=param) from exc
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed JSON body: {exc}", code="invalid_json") from exc


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` but cancel it if the client disconnects first (raises ``ClientGone``)."""

    async def watch() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(watch())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ClientGone
