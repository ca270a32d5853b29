"""Malformed HTTP/1.1 over raw sockets: request lines, header bytes, framing, early closes.

Each case names what it sends and what a sound daemon does with it. Most may be answered with
a 4xx or by closing the connection; none may get a 5xx, hang, crash the daemon or log a
traceback. Request smuggling shapes (``Content-Length`` with ``Transfer-Encoding``, chunked on
HTTP/1.0) must get 400 and a closed connection (issue 12).
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.campaign.fleet import CLIENT_KEY, NEURON_TOKEN

HOST = b"Host: 127.0.0.1\r\n"


@dataclass(frozen=True)
class RawCase:
    name: str
    data: bytes
    answers: int = 1  # how many answers to read (pipelining)
    # no-5xx | 400-close | any (early close)
    expect: str = "no-5xx"
    close_after_send: bool = False


def _post(path: bytes, auth: bytes, extra: bytes, body: bytes) -> bytes:
    return (
        b"POST " + path + b" HTTP/1.1\r\n" + HOST + b"Authorization: Bearer " + auth + b"\r\n" + extra + body
    )


def raw_cases(target: str) -> list[RawCase]:
    """The raw cases for one daemon (``gateway`` or ``neuron``)."""
    auth = CLIENT_KEY.encode() if target == "gateway" else NEURON_TOKEN.encode()
    chat = b"/v1/chat/completions"
    body = b'{"model":"tiny-chat","messages":[{"role":"user","content":"hi"}],"max_tokens":2}'
    ctype = b"Content-Type: application/json\r\n"
    size = hex(len(body))[2:].encode()
    smuggled = b"GET /health HTTP/1.1\r\n" + HOST + b"\r\n"

    def chunked(frames: bytes) -> bytes:
        return _post(chat, auth, ctype + b"Transfer-Encoding: chunked\r\n\r\n", frames)

    cases = [
        RawCase("garbage-request-line", b"GARBAGE\r\n\r\n"),
        RawCase("method-only", b"GET\r\n\r\n"),
        RawCase("http-9.9", b"GET /health HTTP/9.9\r\n" + HOST + b"\r\n"),
        RawCase("http-0.9", b"GET /health\r\n\r\n"),
        RawCase("extra-token", b"GET /health HTTP/1.1 extra\r\n" + HOST + b"\r\n"),
        RawCase("binary-junk", bytes(range(256)) * 4),
        RawCase("tls-hello-on-plain", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64),
        RawCase("huge-request-line", b"GET /" + b"a" * 200_000 + b" HTTP/1.1\r\n" + HOST + b"\r\n"),
        RawCase("lf-only", b"GET /health HTTP/1.1\n" + HOST.replace(b"\r\n", b"\n") + b"\n"),
        RawCase("nul-in-header", b"GET /health HTTP/1.1\r\n" + HOST + b"X-A: a\x00b\r\n\r\n"),
        RawCase("del-in-header-name", b"GET /health HTTP/1.1\r\n" + HOST + b"X\x7fA: b\r\n\r\n"),
        RawCase("header-without-colon", b"GET /health HTTP/1.1\r\n" + HOST + b"NoColonHere\r\n\r\n"),
        RawCase("space-in-header-name", b"GET /health HTTP/1.1\r\n" + HOST + b"Bad Header: x\r\n\r\n"),
        RawCase("space-before-colon", b"GET /health HTTP/1.1\r\n" + HOST + b"X-A : x\r\n\r\n"),
        RawCase("header-folding", b"GET /health HTTP/1.1\r\n" + HOST + b"X-A: a\r\n  folded\r\n\r\n"),
        RawCase("non-ascii-header-value", b"GET /health HTTP/1.1\r\n" + HOST + b"X-A: \xff\xfe\r\n\r\n"),
        RawCase("huge-header", b"GET /health HTTP/1.1\r\n" + HOST + b"X-A: " + b"v" * 200_000 + b"\r\n\r\n"),
        RawCase("many-headers", b"GET /health HTTP/1.1\r\n" + HOST + b"X-A: v\r\n" * 5_000 + b"\r\n"),
        RawCase("no-host", b"GET /health HTTP/1.1\r\n\r\n"),
        RawCase("two-hosts", b"GET /health HTTP/1.1\r\n" + HOST + HOST + b"\r\n"),
        RawCase("cl-not-a-number", _post(chat, auth, ctype + b"Content-Length: ten\r\n\r\n", body)),
        RawCase("cl-negative", _post(chat, auth, ctype + b"Content-Length: -5\r\n\r\n", body)),
        RawCase("cl-plus-sign", _post(chat, auth, ctype + b"Content-Length: +5\r\n\r\n", body)),
        RawCase(
            "cl-duplicate-differing",
            _post(chat, auth, ctype + b"Content-Length: 5\r\nContent-Length: 7\r\n\r\n", body),
        ),
        RawCase("cl-huge", _post(chat, auth, ctype + b"Content-Length: 99999999999999999999\r\n\r\n", body),
                close_after_send=True),
        RawCase("chunk-size-not-hex", chunked(b"zz\r\n" + body + b"\r\n0\r\n\r\n")),
        RawCase("chunk-size-negative", chunked(b"-1\r\n" + body + b"\r\n0\r\n\r\n")),
        RawCase("chunk-size-0x", chunked(b"0x" + size + b"\r\n" + body + b"\r\n0\r\n\r\n")),
        RawCase("chunk-without-crlf", chunked(size + b"\r\n" + body + b"0\r\n\r\n")),
        RawCase("chunk-too-long", chunked(b"ffffffffffffffff\r\n" + body + b"\r\n0\r\n\r\n"),
                close_after_send=True),
        RawCase("chunk-bad-trailer", chunked(size + b"\r\n" + body + b"\r\n0\r\nX: \x00\r\n\r\n")),
        RawCase("chunk-size-line-endless", chunked(b"1" * 100_000), close_after_send=True),
        # A transfer coding other than one "chunked" is a malformed request: 400 and close.
        RawCase("te-unknown", _post(chat, auth, ctype + b"Transfer-Encoding: gzip\r\n\r\n", body),
                expect="400-close"),
        RawCase("te-chunked-gzip", _post(chat, auth, ctype + b"Transfer-Encoding: chunked, gzip\r\n\r\n",
                                         body), expect="400-close"),
        RawCase(
            "cl-and-te",
            _post(
                chat,
                auth,
                ctype + b"Content-Length: " + str(len(size) + len(body) + 9).encode()
                + b"\r\nTransfer-Encoding: chunked\r\n\r\n",
                size + b"\r\n" + body + b"\r\n0\r\n\r\n" + smuggled,
            ),
            answers=2,
            expect="400-close",
        ),
        RawCase(
            "http10-chunked",
            b"POST " + chat + b" HTTP/1.0\r\n" + HOST + b"Authorization: Bearer " + auth + b"\r\n" + ctype
            + b"Transfer-Encoding: chunked\r\n\r\n" + size + b"\r\n" + body + b"\r\n0\r\n\r\n",
            expect="400-close",
        ),
        RawCase(
            "pipelined-garbage",
            b"GET /health HTTP/1.1\r\n" + HOST + b"\r\n" + b"GARBAGE \x00\xff\r\n\r\n",
            answers=2,
        ),
        RawCase("pipelined-many", (b"GET /health HTTP/1.1\r\n" + HOST + b"\r\n") * 50, answers=50),
        RawCase("early-close-in-request-line", b"POST /v1/chat/comp", close_after_send=True, expect="any"),
        RawCase("early-close-in-headers", _post(chat, auth, b"Content-Ty", b""), close_after_send=True,
                expect="any"),
        RawCase(
            "early-close-in-body",
            _post(chat, auth, ctype + b"Content-Length: 10000\r\n\r\n", body),
            close_after_send=True,
            expect="any",
        ),
        RawCase("early-close-in-chunk", chunked(b"400\r\n" + body), close_after_send=True, expect="any"),
    ]  # fmt: skip
    return cases
