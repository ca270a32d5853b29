"""The relay's reply parser (llhttp with the checks ``cortex_gateway.neuron_http`` adds) against
h11, a second, independent HTTP/1.1 implementation, on random replies.

Each reply is written by a real server on loopback in random pieces (so every framing is cut at
random byte boundaries) and then the server hangs up; the same bytes go to an h11 client. On a
valid reply both must give the same status, headers and body; on a reply with one malformation
drawn from a catalogue that both implementations must refuse, both must refuse it. The shapes
where the two differ on purpose are listed at the end, each with what the relay does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cortex_gateway.neuron_http import NeuronHTTPError, NeuronPool
from tests.gateway.scripted_server import HANG_UP, RawServer, get, read_request

REJECTED = "rejected"
Outcome = tuple[int, list[tuple[str, str]], bytes] | str

_TCHAR = "!#$%&'*+-.^_`|~" + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_FRAMING_NAMES = {"content-length", "transfer-encoding", "connection", "keep-alive", "trailer"}
_tokens = st.text(_TCHAR, min_size=1, max_size=12)
_field_names = _tokens.filter(lambda name: name.lower() not in _FRAMING_NAMES)
_field_values = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E) | st.just(" ") | st.just("\t"), max_size=30
).map(lambda value: value.strip(" \t"))
_padding = st.sampled_from(["", " ", "  ", "\t"])
_fields = st.lists(st.tuples(_field_names, _field_values, _padding), max_size=6)


@dataclass
class Reply:
    """A reply kept in parts, so that a malformation can be put into one of them."""

    status_line: bytes
    lines: list[bytes]
    framing: str  # "length", "chunked", "close" or "none" (204, 304)
    chunks: list[tuple[bytes, bytes]] = field(default_factory=list)  # (size line, data)
    trailers: list[bytes] = field(default_factory=list)
    body: bytes = b""
    interim: bytes = b""  # 1xx replies sent first

    def payload(self) -> bytes:
        if self.framing != "chunked":
            return self.body
        encoded = b"".join(line + b"\r\n" + data + b"\r\n" for line, data in self.chunks)
        return encoded + b"0\r\n" + b"".join(t + b"\r\n" for t in self.trailers) + b"\r\n"

    def raw(self) -> bytes:
        head = b"\r\n".join([self.status_line, *self.lines]) + b"\r\n\r\n"
        return self.interim + head + self.payload()


def _line(name: str, value: str, padding: str) -> bytes:
    return f"{name}:{padding}{value}{padding}".encode("latin-1")


@st.composite
def replies(draw: st.DrawFn) -> Reply:
    """A valid reply: interim replies, either version, any status, a reason or none, random
    fields, and a framing with random chunk sizes (hex case, leading zeros), extensions, trailers."""
    interim = b"".join(
        draw(
            st.lists(
                st.sampled_from([b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early\r\nlink: x\r\n\r\n"]),
                max_size=2,
            )
        )
    )
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
    status = draw(st.sampled_from([200, 201, 202, 204, 304, 400, 404, 409, 429, 500, 502, 503]))
    reason = draw(
        st.sampled_from([b"", b" "])
        | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E) | st.just(" "), max_size=12).map(
            lambda text: b" " + text.encode()
        )
    )
    lines = [_line(*f) for f in draw(_fields)]
    status_line = b"%s %d%s" % (version, status, reason)
    if status in (204, 304):
        return Reply(status_line, lines, "none", interim=interim)
    body = draw(st.binary(max_size=3000))
    framings = ["length", "chunked", "close"] if version == b"HTTP/1.1" else ["length", "close"]
    framing = draw(st.sampled_from(framings))
    reply = Reply(status_line, lines, framing, body=body, interim=interim)
    if framing == "length":
        padding = draw(_padding)
        lines.insert(
            draw(st.integers(0, len(lines))),
            b"Content-Length:%s%d%s" % (padding.encode(), len(body), padding.encode()),
        )
    elif framing == "chunked":
        coding = draw(st.sampled_from([b"chunked", b"Chunked", b"CHUNKED"]))
        lines.insert(draw(st.integers(0, len(lines))), b"Transfer-Encoding: " + coding)
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=8)))
        for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True):
            if b > a:
                size = draw(st.sampled_from(["%x", "%X", "%04x", "%08X"])) % (b - a)
                extension = draw(st.sampled_from(["", ";a", ";name=value", ';q="quoted"', ";a=1;b", ";a="]))
                reply.chunks.append(((size + extension).encode(), body[a:b]))
        reply.trailers = [_line(*f) for f in draw(_fields)]
    return reply


# -- the malformations both implementations must refuse --------------------------------------------


def _mutations(reply: Reply) -> list[str]:
    kinds = ["status", "version", "header-line", "truncated-head"]
    if reply.framing != "close":  # the server's hang-up would end that body
        kinds.append("past-the-end")
    if reply.framing == "length":
        kinds += ["content-length", "second-content-length"]
        if reply.body:
            kinds.append("truncated-body")
    if reply.framing == "chunked":
        kinds += ["transfer-encoding", "chunk-size", "last-chunk-size", "trailer", "truncated-body"]
        if reply.chunks:
            kinds += ["chunk-data-length", "chunk-data-end"]
    return kinds


@st.composite
def malformed_replies(draw: st.DrawFn) -> tuple[bytes, str, int]:
    """A valid reply with one malformation; with where the pieces may no longer be cut (bytes
    past the end of a reply must arrive with its end to belong to it)."""
    reply = draw(replies())
    kind = draw(st.sampled_from(_mutations(reply)))
    if kind == "status":
        version, _, rest = reply.status_line.partition(b" ")
        bad = draw(st.sampled_from([b"2000", b"20", b"2x0", b"099", b"000", b"", b"-200"]))
        reply.status_line = version + b" " + bad + rest[3:]
    elif kind == "version":
        bad = draw(
            st.sampled_from([b"HTCPCP/1.0", b"HTTP/1", b"HTTP/11", b"http/1.1", b"HTTP/1.1/", b"SSH-2.0"])
        )
        reply.status_line = bad + reply.status_line[8:]
    elif kind == "header-line":
        bad = draw(
            st.sampled_from([b"x-a 1", b"x(a): 1", b"x a: 1", b"x-a : 1", b": 1", b"x-a: a\x00b", b"\x01: 1"])
        )
        reply.lines.insert(draw(st.integers(0, len(reply.lines))), bad)
    elif kind == "truncated-head":
        raw = reply.raw()
        head_end = len(raw) - len(reply.payload())  # past the final head's blank line
        return raw[: draw(st.integers(1, head_end - 1))], kind, 0
    elif kind == "content-length":
        bad = draw(st.sampled_from([b"%da", b"-%d", b"+%d", b"0x%x", b"%d_0", b"", b"%d, 1%d", b"1%d 1"]))
        reply.lines = [
            b"Content-Length: " + (bad % ((len(reply.body),) * bad.count(b"%")))
            if line.startswith(b"Content-Length")
            else line
            for line in reply.lines
        ]
    elif kind == "second-content-length":
        reply.lines.append(b"content-length: %d" % (len(reply.body) + draw(st.integers(1, 9))))
    elif kind == "transfer-encoding":
        bad_lines = draw(
            st.sampled_from(
                [
                    [b"Transfer-Encoding: gzip, chunked"],
                    [b"Transfer-Encoding: chunked, gzip"],
                    [b"Transfer-Encoding: identity"],
                    [b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"],
                    [b"Transfer-Encoding: xchunked"],
                ]
            )
        )
        reply.lines = [line for line in reply.lines if not line.startswith(b"Transfer-Encoding")] + bad_lines
    elif kind in ("chunk-size", "last-chunk-size"):
        prefix = draw(st.sampled_from([b"-", b"+", b"0x", b" ", b"_", b"g", b";"]))
        if kind == "chunk-size" and reply.chunks:
            n = draw(st.integers(0, len(reply.chunks) - 1))
            line, data = reply.chunks[n]
            reply.chunks[n] = (prefix + line, data)
        else:
            reply.chunks.append((prefix + b"0", b""))  # a last chunk with a bad size, then the real one
    elif kind == "chunk-data-length":
        n = draw(st.integers(0, len(reply.chunks) - 1))
        line, data = reply.chunks[n]
        size = len(data) + draw(st.sampled_from([-1, 1, 2]))
        if size <= 0:
            size = len(data) + 1
        reply.chunks[n] = (b"%x" % size, data)
    elif kind == "chunk-data-end":
        n = draw(st.integers(0, len(reply.chunks) - 1))
        line, data = reply.chunks[n]
        reply.chunks[n] = (line, data + b"XY")  # the data's CRLF comes two bytes late
    elif kind == "trailer":
        reply.trailers.append(draw(st.sampled_from([b"no colon", b"x y: 1", b"x: \x00"])))
    elif kind == "truncated-body":
        raw = reply.raw()
        payload = reply.payload()
        start = len(raw) - len(payload)
        return raw[: draw(st.integers(start, len(raw) - 1))], kind, 0
    elif kind == "past-the-end":
        raw = reply.raw()
        junk = draw(st.binary(min_size=1, max_size=20).filter(lambda b: b[:1] not in (b"\r", b"\n")))
        return raw + junk, kind, len(raw) - 1
    return reply.raw(), kind, 0


# -- the two parsers -------------------------------------------------------------------------------


def h11_outcome(raw: bytes) -> Outcome:
    """What h11, as a client, makes of ``raw`` followed by the server closing the connection:
    a reply, or :data:`REJECTED` (bytes left after the reply count: nothing asked for them)."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("host", "neuron")]))
    client.send(h11.EndOfMessage())
    status, headers, body = 0, [], b""
    try:
        client.receive_data(raw)
        client.receive_data(b"")
        while True:
            event = client.next_event()
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers]
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return REJECTED if client.trailing_data[0] else (status, headers, body)
            elif not isinstance(event, h11.InformationalResponse):
                raise AssertionError(f"h11 did not finish the reply: {event!r}")
    except h11.RemoteProtocolError:
        return REJECTED


async def relay_outcome(raw: bytes, splits: list[int]) -> Outcome:
    """What the relay's client makes of ``raw`` written in pieces cut at ``splits``, the server
    then hanging up."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
        await read_request(reader)
        for start, end in zip([0, *splits], [*splits, len(raw)], strict=True):
            writer.write(raw[start:end])
            await writer.drain()
            await asyncio.sleep(0)
        return HANG_UP

    server = RawServer(script, "127.0.0.1")
    await server.start()
    pool = NeuronPool(connect_timeout_s=2.0)
    try:
        try:
            response = await get(pool, server.origin)
            body = await response.read()
        except NeuronHTTPError:
            return REJECTED
        # h11 reports the Transfer-Encoding value lower-cased (it is a token, case-insensitive).
        headers = [(n, v.lower() if n == "transfer-encoding" else v) for n, v in response.headers]
        return response.status, headers, body
    finally:
        await pool.close()
        await server.stop()


def splits(size: int, last: int = 0) -> st.SearchStrategy[list[int]]:
    """Where to cut ``size`` bytes into the writes the server makes: anywhere, or up to ``last``."""
    top = last or size - 1
    if top < 1:
        return st.just([])
    return st.lists(st.integers(1, top), max_size=6).map(lambda cuts: sorted(set(cuts)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replies(), st.data())
def test_valid_replies_give_what_h11_gives(reply: Reply, data: st.DataObject) -> None:
    raw = reply.raw()
    cuts = data.draw(splits(len(raw)))
    expected = h11_outcome(raw)
    assert expected != REJECTED, raw  # the generator makes valid replies only
    assert asyncio.run(relay_outcome(raw, cuts)) == expected


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed_replies(), st.data())
def test_malformed_replies_are_refused_as_h11_refuses_them(
    malformed: tuple[bytes, str, int], data: st.DataObject
) -> None:
    raw, kind, no_cut_after = malformed
    cuts = data.draw(splits(len(raw), no_cut_after))
    assert h11_outcome(raw) == REJECTED, (kind, raw)  # the catalogue holds what both must refuse
    assert asyncio.run(relay_outcome(raw, cuts)) == REJECTED, (kind, raw)


# -- where the relay and h11 differ on purpose -----------------------------------------------------

CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx-a: a\x01b\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx-a: 1\r\n 2\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\ncontent-length: 5\n\nhello",
        b"HTTP/1.2 200 OK\r\ncontent-length: 0\r\n\r\n",
        CHUNKED_HEAD + b"5 \r\nhello\r\n0\r\n\r\n",
        CHUNKED_HEAD + b"5;a=1 ;b\r\nhello\r\n0\r\n\r\n",
        CHUNKED_HEAD + b"5;\r\nhello\r\n0\r\n\r\n",
    ],
    ids=[
        "equal-content-lengths",
        "transfer-encoding-and-content-length",
        "control-byte-in-a-value",
        "obsolete-line-folding",
        "bare-lf",
        "http-1.2",
        "space-after-chunk-size",
        "space-in-chunk-extension",
        "empty-chunk-extension",
    ],
)
def test_the_relay_refuses_what_h11_tolerates(raw: bytes) -> None:
    """Each of these h11 accepts and llhttp refuses, as Node, uvicorn and aiohttp do: shapes no
    neuron server sends, several of them request-smuggling or response-splitting shapes."""
    assert h11_outcome(raw) != REJECTED
    assert asyncio.run(relay_outcome(raw, [])) == REJECTED


def test_empty_lines_after_a_reply_are_ignored_where_h11_would_keep_them() -> None:
    """llhttp skips CRLFs between messages (RFC 9112 §2.2's robustness rule); h11 keeps them for a
    next reply that never comes. The reply is whole either way, and its connection is not reused
    for bytes nobody asked for."""
    raw = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello\r\n"
    assert h11_outcome(raw) == REJECTED
    assert asyncio.run(relay_outcome(raw, [])) == (200, [("content-length", "5")], b"hello")
