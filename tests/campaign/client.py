"""Send exact bytes over a socket and read back one HTTP/1.1 answer, whatever it looks like.

The campaign needs to send what no HTTP library would (invalid UTF-8 in paths, bad framing), so
requests are built by hand and answers parsed leniently: an answer is its status (``None`` when
the server closed or went silent without one), its headers and its body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Answer:
    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str | None = None  # why no (complete) answer came: "closed", "timeout", ...

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def build(
    method: str | bytes,
    path: str | bytes,
    headers: Sequence[tuple[str | bytes, str | bytes]],
    body: bytes = b"",
    *,
    content_length: bool = True,
    version: bytes = b"HTTP/1.1",
) -> bytes:
    """One request's bytes: ``Host`` and ``Content-Length`` are added unless already present."""

    def raw(value: str | bytes) -> bytes:
        return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")

    names = {raw(name).lower() for name, _ in headers}
    lines = [raw(method) + b" " + raw(path) + b" " + version]
    if b"host" not in names:
        lines.append(b"Host: 127.0.0.1")
    lines.extend(raw(name) + b": " + raw(value) for name, value in headers)
    if content_length and b"content-length" not in names and b"transfer-encoding" not in names:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], head_only: bool) -> bytes:
    if head_only:
        return b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts: list[bytes] = []
        while True:
            size_line = await reader.readline()
            if not size_line:
                raise ConnectionError("closed inside a chunked body")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    return await reader.read()


async def read_answer(
    reader: asyncio.StreamReader, *, head_only: bool = False, endless: bool = False
) -> Answer:
    """One answer from ``reader`` (interim 1xx answers are skipped).

    ``endless``: the route streams events until the client leaves, so a 2xx event stream is
    returned with its head only (reading on would never end); any other answer is read whole.
    """
    while True:
        status_line = await reader.readline()
        if not status_line:
            return Answer(None, error="closed")
        parts = status_line.split()
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if status is not None and 100 <= status < 200:
            continue
        streaming = headers.get("content-type", "").startswith("text/event-stream")
        if endless and streaming and status is not None and 200 <= status < 300:
            return Answer(status, headers)
        body = await _read_body(reader, headers, head_only or status in (204, 304))
        return Answer(status, headers, body)


async def exchange(
    port: int,
    data: bytes,
    *,
    limit_s: float = 60.0,
    head_only: bool = False,
    answers: int = 1,
    endless: bool = False,
) -> list[Answer]:
    """Send ``data`` on a fresh connection and read up to ``answers`` answers."""
    got: list[Answer] = []
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(limit_s):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
            writer.write(data)
            await writer.drain()
            for _ in range(answers):
                answer = await read_answer(reader, head_only=head_only, endless=endless)
                got.append(answer)
                if answer.status is None:
                    break
    except TimeoutError:
        got.append(Answer(None, error="timeout"))
    except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
        got.append(Answer(None, error=f"{type(exc).__name__}: {exc}"))
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    return got


async def send(
    port: int, data: bytes, *, limit_s: float = 60.0, head_only: bool = False, endless: bool = False
) -> Answer:
    return (await exchange(port, data, limit_s=limit_s, head_only=head_only, endless=endless))[0]
