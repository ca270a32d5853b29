"""A response's head and body framing for the httptools server, by h11's rules, without h11.

The head is built the way h11 (under hypercorn) builds it, so that the two servers put the same
bytes on the wire and a client cannot tell them apart: no reason phrase, the app's headers in its
order (names and values stripped), the ``date`` header after them, then the framing headers h11
rewrites at the end (``Transfer-Encoding: chunked`` for a body of unknown length to an HTTP/1.1
client, ``Connection: close`` whenever the connection will not be kept). tests/kernel/
test_http11_server.py holds the two to the same bytes on random responses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import Enum
from time import time
from wsgiref.handlers import format_date_time

# RFC 9110 §5.1 token characters for a name; a value may hold neither CR, LF nor NUL (§5.5), so an
# app cannot split a response or smuggle a header through a value it relays.
_BAD_NAME = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")


class Framing(Enum):
    """How a response body is delimited on the wire."""

    NONE = "none"  # HEAD, 1xx, 204, 304: no body bytes at all
    LENGTH = "length"  # Content-Length
    CHUNKED = "chunked"
    CLOSE = "close"  # an HTTP/1.0 client and no length: the body ends when the connection does


class ResponseError(RuntimeError):
    """The app asked for a response HTTP/1.1 cannot carry (a bad header, a wrong body length)."""


class DateHeader:
    """The ``date`` header's value, formatted once a second rather than once a response."""

    __slots__ = ("second", "value")

    def __init__(self) -> None:
        self.second = -1
        self.value = b""

    def now(self) -> bytes:
        now = time()
        second = int(now)
        if second != self.second:
            self.second = second
            self.value = format_date_time(now).encode("ascii")
        return self.value


def _comma_tokens(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    tokens: list[bytes] = []
    for found, value in headers:
        if found.lower() == name:
            tokens.extend(token.strip().lower() for token in value.split(b",") if token.strip())
    return tokens


def _without(headers: list[tuple[bytes, bytes]], name: bytes) -> list[tuple[bytes, bytes]]:
    return [(found, value) for found, value in headers if found.lower() != name]


class ResponseHead:
    """The bytes of a response head and what they commit the body and the connection to."""

    __slots__ = ("data", "framing", "keep_alive", "length")

    def __init__(self, data: bytes, framing: Framing, length: int, keep_alive: bool) -> None:
        self.data = data
        self.framing = framing
        self.length = length
        self.keep_alive = keep_alive


def response_head(
    status: int,
    app_headers: Iterable[tuple[bytes, bytes]],
    date: bytes,
    *,
    head_request: bool,
    http10: bool,
    keep_alive: bool,
) -> ResponseHead:
    """Build a response head as h11 would for this request (``keep_alive``: the request allows it)."""
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    chunked = close = False
    for raw_name, raw_value in app_headers:
        name = bytes(raw_name).strip()
        value = bytes(raw_value).strip()
        if not name or _BAD_NAME.search(name) or _BAD_VALUE.search(value):
            raise ResponseError(f"invalid response header {name!r}: {value!r}")
        lowered = name.lower()
        if lowered == b"content-length":
            if not value.isdigit() or (length is not None and int(value) != length):
                raise ResponseError(f"invalid Content-Length {value!r}")
            length = int(value)
        elif lowered == b"transfer-encoding":
            if value.lower() != b"chunked" or chunked:
                raise ResponseError("only one Transfer-Encoding: chunked may frame a response")
            chunked = True
        elif lowered == b"connection":
            close = close or b"close" in _comma_tokens([(name, value)], b"connection")
        headers.append((name, value))
    headers.append((b"date", date))
    keep_alive = keep_alive and not http10
    need_close = False
    if status < 200 or status in (204, 304):
        framing = Framing.NONE
    else:
        unknown = chunked or length is None
        if unknown:
            # A body of unknown length (h11 frames a HEAD answer's headers as a GET's). The app's
            # framing headers go, re-scanned only when it sent one (not for a plain SSE stream).
            if chunked or length is not None:
                framing_names = (b"content-length", b"transfer-encoding")
                headers = [pair for pair in headers if pair[0].lower() not in framing_names]
            length = None
            if http10:
                need_close = not head_request
            else:
                headers.append((b"Transfer-Encoding", b"chunked"))
        if head_request:
            framing = Framing.NONE
        elif unknown:
            framing = Framing.CLOSE if http10 else Framing.CHUNKED
        else:
            framing = Framing.LENGTH
    if not keep_alive or need_close:
        tokens = set(_comma_tokens(headers, b"connection"))
        tokens.discard(b"keep-alive")
        tokens.add(b"close")
        headers = _without(headers, b"connection")
        headers.extend((b"Connection", token) for token in sorted(tokens))
    # A list, not a generator: a generator is resumed once per header (a Python call each).
    lines = [b"%s: %s\r\n" % pair for pair in headers]
    data = b"HTTP/1.1 %d \r\n%b\r\n" % (status, b"".join(lines))
    return ResponseHead(data, framing, length or 0, keep_alive and not need_close and not close)


def informational_head(status: int, date: bytes) -> bytes:
    """A 1xx head (``100 Continue``), as h11 writes it: it carries the date like any other."""
    return b"HTTP/1.1 %d \r\ndate: %s\r\n\r\n" % (status, date)
