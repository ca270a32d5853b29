"""The relay's lean HTTP/1.1 client (``cortex_gateway.neuron_http``) driven against real servers.

Nothing here is mocked. Each test opens real TCP connections on loopback from a real
:class:`NeuronPool` either to an aiohttp server (a real HTTP implementation, for the ordinary
replies: sized JSON, chunked SSE, keep-alive, HEAD, TLS) or to an ``asyncio.start_server`` server
that writes scripted bytes, for what aiohttp would never send: replies one byte at a time, chunk
extensions and trailers, interim replies, close-delimited bodies, malformed or truncated replies,
stalls, neurons that close idle connections, and a body large enough to exercise flow control.
What the servers saw (connections opened, connections the client closed, request bytes) is the
evidence for pooling and disconnect behaviour.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from cortex_gateway.neuron_http import (
    MAX_HEAD_BYTES,
    NeuronHTTPError,
    NeuronPool,
    NoResponse,
    Origin,
)
from tests.gateway.scripted_server import (
    CHUNKED,
    HANG_UP,
    RawServer,
    Script,
    answering,
    chunks,
    eventually,
    get,
    head,
    read_request,
    sized,
    trickle,
)
from tests.system_tools import tool_or_skip


async def get_body(pool: NeuronPool, origin: Origin, path: str = "/") -> bytes:
    response = await get(pool, origin, path)
    assert response.status == 200
    return await response.read()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
async def make_pool() -> AsyncIterator[Callable[..., NeuronPool]]:
    pools: list[NeuronPool] = []

    def make(**options: Any) -> NeuronPool:
        pools.append(NeuronPool(connect_timeout_s=2.0, **options))
        return pools[-1]

    yield make
    for pool in pools:
        await pool.close()


@pytest.fixture
def pool(make_pool: Callable[..., NeuronPool]) -> NeuronPool:
    return make_pool()


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[..., Awaitable[RawServer]]]:
    servers: list[RawServer] = []

    async def start(script: Script, host: str = "127.0.0.1") -> RawServer:
        server = RawServer(script, host)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def web_server() -> AsyncIterator[Callable[..., Awaitable[Origin]]]:
    runners: list[web.AppRunner] = []

    async def start(routes: list[web.RouteDef], ssl_context: ssl.SSLContext | None = None) -> Origin:
        app = web.Application()
        app.add_routes(routes)
        runner = web.AppRunner(app, shutdown_timeout=0.2)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
        scheme = "https" if ssl_context else "http"
        return Origin.from_endpoint(f"{scheme}://127.0.0.1:{runner.addresses[0][1]}")

    yield start
    for runner in runners:
        await runner.cleanup()


def replying(
    reply: Callable[[], web.StreamResponse], peers: list[object] | None = None
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp handler answering ``reply()``; it notes in ``peers`` which client connection
    (peer address) each request came on."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if peers is not None:
            peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return reply()

    return handler


MODELS = {"object": "list", "data": [{"id": "tiny-chat"}, {"id": "tiny-embed"}]}


# -- Origin ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://127.0.0.1:8080", Origin("127.0.0.1", 8080, "", b"127.0.0.1:8080")),
        ("http://neuron-1", Origin("neuron-1", 80, "", b"neuron-1:80")),
        ("http://neuron-1:9000/base/", Origin("neuron-1", 9000, "/base", b"neuron-1:9000")),
        ("http://neuron-1:9000/a/b", Origin("neuron-1", 9000, "/a/b", b"neuron-1:9000")),
        ("http://[::1]:9000", Origin("::1", 9000, "", b"[::1]:9000")),
        ("http://[fe80::1]/x", Origin("fe80::1", 80, "/x", b"[fe80::1]:80")),
        ("https://neuron.example", Origin("neuron.example", 443, "", b"neuron.example:443", tls=True)),
        (
            "https://neuron.example:8443/v/",
            Origin("neuron.example", 8443, "/v", b"neuron.example:8443", tls=True),
        ),
    ],
)
def test_origin_from_endpoint(endpoint: str, expected: Origin) -> None:
    assert Origin.from_endpoint(endpoint) == expected


@pytest.mark.parametrize(
    "endpoint", ["ftp://neuron:21", "ws://neuron:80", "neuron:8080", "http://", "http:///v1", "//neuron:80"]
)
def test_origin_rejects_what_is_not_an_http_url_with_a_host(endpoint: str) -> None:
    with pytest.raises(ValueError, match="http"):
        Origin.from_endpoint(endpoint)


# -- ordinary replies from a real HTTP server (aiohttp) --------------------------------------------


async def test_a_sized_json_reply(web_server: Callable[..., Awaitable[Origin]], pool: NeuronPool) -> None:
    origin = await web_server([web.get("/v1/models", replying(lambda: web.json_response(MODELS)))])
    response = await get(pool, origin, "/v1/models")
    body = await response.read()
    assert response.status == 200
    assert json.loads(body) == MODELS
    fields = dict(response.headers)
    assert fields["content-type"] == "application/json; charset=utf-8"
    assert int(fields["content-length"]) == len(body)
    assert all(name == name.lower() for name, _ in response.headers)
    assert await response.next_piece() is None  # the end stays the end


async def test_an_error_status_is_a_reply_not_an_exception(
    web_server: Callable[..., Awaitable[Origin]], pool: NeuronPool
) -> None:
    origin = await web_server([web.get("/v1/models", replying(lambda: web.json_response(MODELS)))])
    response = await get(pool, origin, "/nowhere")
    assert (response.status, await response.read()) == (404, b"404: Not Found")


async def test_the_request_arrives_intact(
    web_server: Callable[..., Awaitable[Origin]], pool: NeuronPool
) -> None:
    seen: dict[str, Any] = {}

    async def handler(request: web.Request) -> web.Response:
        seen.update(method=request.method, path=request.path_qs, headers=request.headers.copy())
        seen["body"] = await request.read()
        return web.Response(text="ok")

    origin = await web_server([web.post("/v1/chat/completions", handler)])
    body = json.dumps({"model": "tiny-chat", "messages": [{"role": "user", "content": "héllo ✓"}]}).encode()
    extra = b"content-type: application/json\r\nx-request-id: req-42\r\nauthorization: Bearer t0k\r\n"
    response = await pool.request(origin, "POST", "/v1/chat/completions?x=1", extra, body, stall_timeout_s=2)
    assert await response.read() == b"ok"
    assert (seen["method"], seen["path"], seen["body"]) == ("POST", "/v1/chat/completions?x=1", body)
    headers = seen["headers"]
    assert headers["Host"] == f"127.0.0.1:{origin.port}"
    assert headers["Content-Length"] == str(len(body))
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Request-Id"] == "req-42"
    assert headers["Authorization"] == "Bearer t0k"


async def test_the_endpoint_path_prefixes_every_request_path(
    web_server: Callable[..., Awaitable[Origin]], pool: NeuronPool
) -> None:
    paths: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        paths.append(request.path_qs)
        return web.Response(text="prefixed")

    plain = await web_server([web.get("/neuron/v1/models", handler)])
    origin = Origin.from_endpoint(f"http://127.0.0.1:{plain.port}/neuron/")
    assert await get_body(pool, origin, "/v1/models?all=1") == b"prefixed"
    assert paths == ["/neuron/v1/models?all=1"]


async def test_a_chunked_sse_stream_arrives_while_it_is_generated(
    web_server: Callable[..., Awaitable[Origin]], pool: NeuronPool
) -> None:
    events = [b'data: {"n": %d}\n\n' % n for n in range(4)] + [b"data: [DONE]\n\n"]
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        stream = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await stream.prepare(request)
        await stream.write(events[0])
        await release.wait()  # the rest only once the client has the first event
        for event in events[1:]:
            await stream.write(event)
            await asyncio.sleep(0.005)
        await stream.write_eof()
        return stream

    origin = await web_server([web.post("/v1/chat/completions", handler)])
    response = await pool.request(origin, "POST", "/v1/chat/completions", b"", b"{}", stall_timeout_s=2)
    assert ("transfer-encoding", "chunked") in response.headers
    assert ("content-type", "text/event-stream") in response.headers
    assert await asyncio.wait_for(response.next_piece(), 1) == events[0]
    release.set()
    assert await response.read() == b"".join(events[1:])


async def test_keep_alive_serves_sequential_requests_on_one_connection(
    web_server: Callable[..., Awaitable[Origin]], pool: NeuronPool
) -> None:
    peers: list[object] = []
    origin = await web_server([web.get("/v1/models", replying(lambda: web.json_response(MODELS), peers))])
    for _ in range(3):
        response = await get(pool, origin, "/v1/models")
        assert json.loads(await response.read()) == MODELS
        response.close()  # closing a finished reply keeps its connection
    assert len(peers) == 3
    assert len(set(peers)) == 1


async def test_a_head_reply_has_no_body_and_keeps_its_connection(
    web_server: Callable[..., Awaitable[Origin]], pool: NeuronPool
) -> None:
    peers: list[object] = []
    origin = await web_server([web.get("/v1/models", replying(lambda: web.json_response(MODELS), peers))])
    response = await pool.request(origin, "HEAD", "/v1/models", b"", b"", stall_timeout_s=2)
    assert response.status == 200
    assert int(dict(response.headers)["content-length"]) > 0  # announced, but never sent for HEAD
    assert await asyncio.wait_for(response.read(), 1) == b""
    assert json.loads(await get_body(pool, origin, "/v1/models")) == MODELS
    assert len(peers) == 2
    assert peers[0] == peers[1]


# -- TLS (a real aiohttp server with a throwaway certificate) --------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    openssl = tool_or_skip("openssl", "to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    key_options = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            *key_options,
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            *subject,
        ],
        check=True,
        capture_output=True,
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    return cert, server_context


async def test_https_neurons_are_reached_over_tls_with_keep_alive(
    certificate: tuple[Path, ssl.SSLContext],
    web_server: Callable[..., Awaitable[Origin]],
    make_pool: Callable[..., NeuronPool],
) -> None:
    cert, server_context = certificate
    peers: list[object] = []
    handler = replying(lambda: web.json_response(MODELS), peers)
    origin = await web_server([web.get("/v1/models", handler)], ssl_context=server_context)
    assert origin.tls
    pool = make_pool(tls_context=ssl.create_default_context(cafile=str(cert)))
    for _ in range(2):
        assert json.loads(await get_body(pool, origin, "/v1/models")) == MODELS
    assert len(peers) == 2
    assert peers[0] == peers[1]


async def test_an_untrusted_tls_certificate_is_no_response(
    certificate: tuple[Path, ssl.SSLContext], web_server: Callable[..., Awaitable[Origin]], pool: NeuronPool
) -> None:
    origin = await web_server([web.get("/", replying(web.Response))], ssl_context=certificate[1])
    with pytest.raises(NoResponse, match="cannot connect"):
        await get(pool, origin)  # the default context trusts the system's roots, not this cert


# -- framing, byte by byte (scripted servers) --------------------------------------------------------


async def test_a_chunked_reply_written_one_byte_at_a_time(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    payload = [b'data: {"n": 1}\n\n', b"x" * 20, b'data: {"n": 2}\n\n']

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
        await read_request(reader)
        await trickle(writer, CHUNKED + chunks(*payload), 0.0005)
        return await answering(sized(b"next"))(reader, writer)

    server = await raw_server(script)
    response = await get(pool, server.origin)
    assert response.status == 200
    pieces = []
    while (piece := await response.next_piece()) is not None:
        pieces.append(piece)
    assert b"".join(pieces) == b"".join(payload)
    assert len(pieces) > 1  # handed over as it came, not buffered to the end
    assert await get_body(pool, server.origin) == b"next"  # the parser stopped exactly at the end
    assert server.connections == 1


async def test_chunk_extensions_are_ignored(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    body = b'5;ext=1\r\nhello\r\n6;name="v";x\r\n world\r\n0;last\r\n\r\n'
    server = await raw_server(answering(CHUNKED + body))
    assert await get_body(pool, server.origin) == b"hello world"


async def test_trailers_end_the_body_and_the_connection_is_reused(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    reply = CHUNKED + chunks(b"hello", b" world", trailer=b"x-checksum: abc\r\nx-usage: 7\r\n")
    server = await raw_server(answering(reply))
    for _ in range(2):
        assert await get_body(pool, server.origin) == b"hello world"
    assert server.connections == 1


async def test_interim_replies_are_skipped(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    real = head(b"201 Created", b"content-length: 7", b"x-real: yes") + b"created"

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(b"100 Continue"))
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(head(b"103 Early Hints", b"link: </style.css>; rel=preload") + real)

    server = await raw_server(script)
    response = await get(pool, server.origin)
    assert response.status == 201
    assert response.headers == [("content-length", "7"), ("x-real", "yes")]
    assert await response.read() == b"created"


async def test_pieces_that_arrive_together_are_handed_over_joined(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    go, sent = asyncio.Event(), asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(CHUNKED)
        await go.wait()
        for piece in (b"one,", b"two,", b"three"):
            writer.write(chunks(piece)[:-5])  # the chunk alone, not the end of the body
            await writer.drain()
            await asyncio.sleep(0.01)
        sent.set()
        await go.wait()
        writer.write(chunks())

    server = await raw_server(script)
    response = await get(pool, server.origin)
    go.set()
    await sent.wait()
    await asyncio.sleep(0.05)  # all three are at the client before it asks
    assert await response.next_piece() == b"one,two,three"
    assert await response.next_piece() is None


async def test_204_has_no_body_and_keeps_its_connection(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    server = await raw_server(answering(head(b"204 No Content", b"x-n: 1")))
    for _ in range(2):
        response = await get(pool, server.origin)
        assert (response.status, response.headers) == (204, [("x-n", "1")])
        assert await asyncio.wait_for(response.read(), 1) == b""
    assert server.connections == 1


async def test_an_empty_sized_reply_returns_its_connection_to_the_pool_once(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    server = await raw_server(answering(sized(b"")))
    assert await get_body(pool, server.origin) == b""
    # Two requests at once need two connections; a connection pooled twice would carry both.
    async with asyncio.timeout(1):
        # typeshed types gather() as a tuple; at run time it is a list
        bodies: list[bytes] = await asyncio.gather(
            get_body(pool, server.origin), get_body(pool, server.origin)
        )  # type: ignore[assignment]
    assert bodies == [b"", b""]
    assert server.connections == 2


# -- replies that end the connection ---------------------------------------------------------------


async def test_a_close_delimited_body_ends_at_eof_and_is_not_reused(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        await read_request(reader)
        writer.write(head(b"200 OK", b"content-type: text/plain") + b"until ")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"the end")
        return HANG_UP

    server = await raw_server(script)
    for _ in range(2):
        response = await get(pool, server.origin)
        assert "content-length" not in dict(response.headers)
        assert await response.read() == b"until the end"
    assert server.connections == 2


@pytest.mark.parametrize(
    "reply",
    [
        sized(b"ok", b"Connection: close"),
        sized(b"ok", b"connection: Keep-Alive, Close"),
        head(b"200 OK", b"content-length: 2", version=b"HTTP/1.0") + b"ok",
    ],
    ids=["connection-close", "close-in-a-list", "http-1.0"],
)
async def test_a_reply_that_ends_the_connection_is_not_reused(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool, reply: bytes
) -> None:
    server = await raw_server(answering(reply))
    assert await get_body(pool, server.origin) == b"ok"
    await eventually(lambda: server.client_closes == 1)  # the client closed it after the reply
    assert await get_body(pool, server.origin) == b"ok"
    assert server.connections == 2


async def test_closing_an_unfinished_reply_drops_its_connection(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(CHUNKED + b"5\r\nfirst\r\n")  # and more would follow...

    server = await raw_server(script)
    response = await get(pool, server.origin)
    assert await response.next_piece() == b"first"
    response.close()
    await eventually(lambda: server.client_closes == 1, within_s=0.5)  # the neuron sees the disconnect
    second = await get(pool, server.origin)
    assert await second.next_piece() == b"first"
    second.close()
    assert server.connections == 2


async def test_pool_close_closes_idle_connections(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    server = await raw_server(answering(sized(b"ok")))
    assert await get_body(pool, server.origin) == b"ok"
    assert server.client_closes == 0
    await pool.close()
    await eventually(lambda: server.client_closes == 1, within_s=0.5)


async def test_idle_connections_past_the_idle_timeout_are_not_reused(
    raw_server: Callable[..., Awaitable[RawServer]], make_pool: Callable[..., NeuronPool]
) -> None:
    pool = make_pool(idle_timeout_s=0.05)
    server = await raw_server(answering(sized(b"ok")))
    assert await get_body(pool, server.origin) == b"ok"
    await asyncio.sleep(0.1)
    assert await get_body(pool, server.origin) == b"ok"
    assert server.connections == 2
    await eventually(lambda: server.client_closes == 1)  # the stale one was closed, not leaked


async def test_idle_connections_beyond_the_limit_are_closed(
    raw_server: Callable[..., Awaitable[RawServer]], make_pool: Callable[..., NeuronPool]
) -> None:
    pool = make_pool(max_idle_per_origin=1)
    both_arrived = asyncio.Event()
    arrived = 0

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
        nonlocal arrived
        await read_request(reader)
        arrived += 1
        if arrived == 2:
            both_arrived.set()
        await both_arrived.wait()  # hold the first so the two requests need two connections
        writer.write(sized(b"ok"))
        return await answering(sized(b"again"))(reader, writer)

    server = await raw_server(script)
    # typeshed types gather() as a tuple; at run time it is a list
    bodies: list[bytes] = await asyncio.gather(get_body(pool, server.origin), get_body(pool, server.origin))  # type: ignore[assignment]
    assert bodies == [
        b"ok",
        b"ok",
    ]
    await eventually(lambda: server.client_closes == 1)  # only one may wait in the pool
    assert await get_body(pool, server.origin) == b"again"
    assert server.connections == 2


async def test_unsolicited_bytes_on_an_idle_connection_drop_it(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(sized(b"ok"))
        await asyncio.sleep(0.02)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n")  # nobody asked

    server = await raw_server(script)
    assert await get_body(pool, server.origin) == b"ok"
    await eventually(lambda: server.client_closes == 1)
    assert await get_body(pool, server.origin) == b"ok"
    assert server.connections == 2


# -- keep-alive connections the neuron closed --------------------------------------------------------


@pytest.mark.parametrize(
    "how", ["closed-while-idle-and-noticed", "closed-while-idle", "closed-on-the-request"]
)
async def test_a_reused_connection_the_neuron_closed_is_replaced_transparently(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool, how: str
) -> None:
    numbers = itertools.count(1)

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
        if next(numbers) > 1:
            return await answering(sized(b"fresh"))(reader, writer)
        await read_request(reader)
        writer.write(sized(b"first"))
        await writer.drain()
        if how == "closed-on-the-request":
            await read_request(reader)  # the race, slowed down: it closes as the request arrives
        return HANG_UP

    server = await raw_server(script)
    assert await get_body(pool, server.origin) == b"first"
    if how == "closed-while-idle-and-noticed":
        await asyncio.sleep(0.05)
    assert await get_body(pool, server.origin) == b"fresh"
    assert server.connections == 2


async def test_the_retry_is_once_and_only_for_a_reused_connection(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    answered = False

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        nonlocal answered
        await read_request(reader)
        if not answered:
            answered = True
            writer.write(sized(b"once"))
            await read_request(reader)
        return HANG_UP  # every later request is dropped unanswered

    server = await raw_server(script)
    assert await get_body(pool, server.origin) == b"once"
    with pytest.raises(NoResponse):
        await get(pool, server.origin)
    assert server.connections == 2  # the reused one, then one fresh retry; no third attempt


# -- failures --------------------------------------------------------------------------------------


async def test_a_refused_connection_is_no_response(pool: NeuronPool) -> None:
    with pytest.raises(NoResponse, match="cannot connect"):
        await get(pool, Origin.from_endpoint(f"http://127.0.0.1:{closed_port()}"))


async def test_a_neuron_that_closes_before_answering_is_no_response(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        await read_request(reader)
        return HANG_UP

    server = await raw_server(script)
    with pytest.raises(NoResponse, match="before answering"):
        await get(pool, server.origin)
    assert server.connections == 1  # a fresh connection is not retried


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"HTCPCP/1.0 418 I'm a teapot\r\n\r\n", "Expected HTTP/"),
        (b"HTTP/1.1 OK\r\n\r\n", "status code"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "Expected HTTP/"),
        (head(b"200 OK", b"content-type text/plain"), "header token"),
        (head(b"200 OK", b"content-length: lots"), "in Content-Length"),
        (b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 70_000, "too large"),
    ],
    ids=["not-http", "no-status", "not-http-at-all", "header-without-colon", "bad-length", "head-too-large"],
)
async def test_a_malformed_head_raises_and_drops_the_connection(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool, reply: bytes, error: str
) -> None:
    server = await raw_server(answering(reply))
    with pytest.raises(NeuronHTTPError, match=error) as caught:
        await get(pool, server.origin)
    assert not isinstance(caught.value, NoResponse)  # bytes came back: not safe to retry elsewhere
    await eventually(lambda: server.client_closes == 1)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (head(b"200 OK", b"content-length: 5") + b"hello, and more", "past Content-Length"),
        (CHUNKED + chunks(b"hello") + b"junk", "after the end"),
        (CHUNKED + b"5\r\nhelloXX0\r\n\r\n", "after chunk data"),
        (CHUNKED + b"zz\r\nhello\r\n", "chunk size"),
    ],
    ids=["past-content-length", "past-last-chunk", "chunk-without-crlf", "bad-chunk-size"],
)
async def test_a_malformed_body_raises_and_drops_the_connection(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool, reply: bytes, error: str
) -> None:
    server = await raw_server(answering(reply))
    response = await get(pool, server.origin)
    with pytest.raises(NeuronHTTPError, match=error) as caught:
        await response.read()
    assert not isinstance(caught.value, NoResponse)
    await eventually(lambda: server.client_closes == 1)


async def test_a_body_after_204_fails_the_reply_and_drops_the_connection(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    server = await raw_server(answering(head(b"204 No Content") + b"surprise"))
    response = await get(pool, server.origin)
    assert response.status == 204
    with pytest.raises(NeuronHTTPError, match="after the end"):  # as bytes past any reply's end
        await response.read()
    await eventually(lambda: server.client_closes == 1)
    assert (await get(pool, server.origin)).status == 204
    assert server.connections == 2


async def test_a_body_sent_to_a_head_request_drops_the_connection(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    # llhttp, not told the request was HEAD, reads the announced body; the head alone is the reply.
    server = await raw_server(answering(sized(b"surprise")))
    response = await pool.request(server.origin, "HEAD", "/", b"", b"", stall_timeout_s=2)
    assert response.status == 200
    assert await asyncio.wait_for(response.read(), 1) == b""
    await eventually(lambda: server.client_closes == 1)  # the bytes made the connection untrustworthy
    assert (await get(pool, server.origin)).status == 200
    assert server.connections == 2


@pytest.mark.parametrize(
    "reply",
    [head(b"200 OK", b"content-length: 10") + b"hello", CHUNKED + b"5\r\nhello\r\n", CHUNKED + b"a\r\nhello"],
    ids=["sized", "chunked-between-chunks", "chunked-inside-a-chunk"],
)
async def test_a_neuron_that_closes_mid_body_raises(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool, reply: bytes
) -> None:
    server = await raw_server(answering(reply, hang_up=True))
    response = await get(pool, server.origin)
    with pytest.raises(NeuronHTTPError, match="mid-reply") as caught:
        await response.read()
    assert not isinstance(caught.value, NoResponse)


# -- stalls --------------------------------------------------------------------------------------


async def test_a_stalled_head_times_out(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # and never answer

    server = await raw_server(script)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await get(pool, server.origin, stall_s=0.2)
    assert 0.18 <= time.monotonic() - started < 1.0
    await eventually(lambda: server.client_closes == 1)  # the neuron sees the disconnect


async def test_a_stalled_body_times_out(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    server = await raw_server(answering(CHUNKED + b"5\r\nfirst\r\n"))
    response = await get(pool, server.origin, stall_s=0.2)
    assert await response.next_piece() == b"first"
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await response.next_piece()
    assert 0.18 <= time.monotonic() - started < 1.0
    with pytest.raises(TimeoutError):
        await response.next_piece()  # the failure sticks
    await eventually(lambda: server.client_closes == 1)


async def test_a_reply_that_keeps_trickling_does_not_time_out(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(CHUNKED)
        for n in range(6):
            await asyncio.sleep(0.1)
            writer.write(b"1\r\n%d\r\n" % n)
        writer.write(chunks())

    server = await raw_server(script)
    started = time.monotonic()
    response = await get(pool, server.origin, stall_s=0.3)
    assert await response.read() == b"012345"
    assert time.monotonic() - started >= 0.5  # longer than the stall timeout in all


async def test_time_the_consumer_spends_elsewhere_is_not_a_stall(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    consumer_back = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(CHUNKED)
        await consumer_back.wait()
        writer.write(chunks(b"late but fine"))

    server = await raw_server(script)
    response = await get(pool, server.origin, stall_s=0.2)
    await asyncio.sleep(0.35)  # the relay is busy elsewhere, not waiting on this reply
    consumer_back.set()
    assert await response.read() == b"late but fine"


# -- flow control ----------------------------------------------------------------------------------


async def test_a_slow_consumer_pauses_reading_and_loses_nothing(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    body = random.Random(7).randbytes(8 * 1024 * 1024)
    block = 64 * 1024
    written = 0

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        await read_request(reader)
        # A small send buffer, so what the kernel absorbs does not hide what the client holds.
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, block)
        writer.write(head(b"200 OK", b"content-length: %d" % len(body)))
        for start in range(0, len(body), block):
            writer.write(body[start : start + block])
            await writer.drain()
            written = start + block

    server = await raw_server(script)
    response = await get(pool, server.origin, stall_s=None)
    await asyncio.sleep(0.4)
    stalled_at = written
    await asyncio.sleep(0.2)
    assert written == stalled_at < len(body) // 2  # the server's writes stalled: the client stopped reading
    pieces = []
    while (piece := await response.next_piece()) is not None:
        pieces.append(piece)
    assert b"".join(pieces) == body  # every byte, in order
    assert written == len(body)


# -- IPv6 ------------------------------------------------------------------------------------------


async def test_an_ipv6_neuron_gets_a_bracketed_host_header(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    requests: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await read_request(reader))
        writer.write(sized(b"v6"))

    try:
        server = await raw_server(script, host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    assert await get_body(pool, server.origin, "/v1/models") == b"v6"
    assert requests[0].startswith(b"GET /v1/models HTTP/1.1\r\nhost: [::1]:%d\r\n" % server.origin.port)


# -- the cap on busy connections per neuron ---------------------------------------------------


def held_replies() -> tuple[Script, asyncio.Event, list[int]]:
    """A script that answers only once ``release`` is set, and records how many requests it
    held at once (``peaks``)."""
    release = asyncio.Event()
    peaks: list[int] = []
    holding = 0

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
        nonlocal holding
        while True:
            await read_request(reader)
            holding += 1
            peaks.append(holding)
            await release.wait()
            holding -= 1
            writer.write(sized(b"ok"))
            await writer.drain()

    return script, release, peaks


async def test_requests_beyond_the_cap_wait_for_a_slot_instead_of_opening_connections(
    raw_server: Callable[..., Awaitable[RawServer]], make_pool: Callable[..., NeuronPool]
) -> None:
    pool = make_pool(max_busy_per_origin=2)
    script, release, peaks = held_replies()
    server = await raw_server(script)
    requests = [asyncio.create_task(get_body(pool, server.origin)) for _ in range(5)]
    await eventually(lambda: len(peaks) == 2)
    await asyncio.sleep(0.05)
    assert (server.connections, pool.busy(server.origin)) == (2, 2)  # three requests wait here
    release.set()
    assert await asyncio.gather(*requests) == [b"ok"] * 5
    assert max(peaks) == 2 and server.connections == 2  # the waiting ones reused the connections
    assert pool.busy(server.origin) == 0


async def test_a_request_that_gives_up_waiting_leaves_no_slot_behind(
    raw_server: Callable[..., Awaitable[RawServer]], make_pool: Callable[..., NeuronPool]
) -> None:
    pool = make_pool(max_busy_per_origin=1)
    script, release, peaks = held_replies()
    server = await raw_server(script)
    first = asyncio.create_task(get_body(pool, server.origin))
    await eventually(lambda: len(peaks) == 1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(get_body(pool, server.origin), 0.05)
    release.set()
    assert await first == b"ok"
    assert pool.busy(server.origin) == 0
    assert await get_body(pool, server.origin) == b"ok"


async def test_every_way_a_reply_ends_gives_its_slot_back(
    raw_server: Callable[..., Awaitable[RawServer]], make_pool: Callable[..., NeuronPool]
) -> None:
    pool = make_pool(max_busy_per_origin=1)
    refused = Origin.from_endpoint(f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(NoResponse):
        await get(pool, refused)
    assert pool.busy(refused) == 0

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(CHUNKED + b"5\r\nfirst\r\n")

    server = await raw_server(stall)
    stalled = await get(pool, server.origin, stall_s=0.1)
    assert await stalled.next_piece() == b"first"
    with pytest.raises(TimeoutError):
        await stalled.next_piece()
    assert pool.busy(server.origin) == 0
    closed = await get(pool, server.origin)
    closed.close()
    assert pool.busy(server.origin) == 0


# -- strict framing (RFC 9112): a broken neuron must not make the relay misframe or balloon ---------

TE = b"transfer-encoding: chunked"


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (CHUNKED + b"-5\r\nhello\r\n0\r\n\r\n", "chunk size"),
        (CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n", "chunk size"),
        (CHUNKED + b"+5\r\nhello\r\n0\r\n\r\n", "chunk size"),
        (CHUNKED + b"0_5\r\nhello\r\n0\r\n\r\n", "chunk size"),
        (CHUNKED + b" 5\r\nhello\r\n0\r\n\r\n", "chunk size"),
        (CHUNKED + b"\r\nhello\r\n0\r\n\r\n", "chunk size"),
        (CHUNKED + b"1" + b"0" * 16 + b"\r\nhello\r\n", "Chunk size overflow"),
        (CHUNKED + b"5 5\r\nhello\r\n0\r\n\r\n", "chunk size"),
        (head(b"200 OK", b"content-length: 5", b"content-length: 6") + b"hello!", "Content-Length"),
        (head(b"200 OK", b"content-length: 5, 6") + b"hello!", "Content-Length"),
        (head(b"200 OK", b"content-length: 6", b"content-length: 5") + b"hello", "Content-Length"),
        (head(b"200 OK", b"content-length: -1"), "Content-Length"),
        (head(b"200 OK", b"content-length: +5") + b"hello", "Content-Length"),
        (head(b"200 OK", b"content-length: 0x5") + b"hello", "Content-Length"),
        (head(b"200 OK", b"content-length: 5_0") + b"hello", "Content-Length"),
        (head(b"200 OK", b"content-length: ") + b"hello", "Content-Length"),
        (head(b"200 OK", b"transfer-encoding: notchunked") + b"5\r\nhello\r\n0\r\n\r\n", "Transfer-Encoding"),
        (head(b"200 OK", b"transfer-encoding: chunked, gzip") + chunks(b"hello"), "Transfer-Encoding"),
        (head(b"200 OK", b"transfer-encoding: gzip, chunked") + chunks(b"hello"), "Transfer-Encoding"),
        (head(b"200 OK", TE, TE) + chunks(b"hello"), "Transfer-Encoding"),
        (head(b"200 OK", TE, b"content-length: 5") + chunks(b"hello"), "with Transfer-Encoding"),
        (head(b"200 OK", b"content-length : 5") + b"hello", "header field char"),
        (head(b"200 OK", b"x-a: 1", b" folded") + b"", "whitespace after header"),
        (head(b"2000 OK", b"content-length: 0"), "status"),
        (head(b"099 Odd", b"content-length: 0"), "status"),
        (head(b"200 OK", b"content-length: 0", version=b"HTTP/1.2"), "HTTP version"),
    ],
    ids=[
        "negative-chunk-size",
        "0x-chunk-size",
        "plus-chunk-size",
        "underscore-chunk-size",
        "space-before-chunk-size",
        "empty-chunk-size",
        "chunk-size-past-64-bits",
        "two-chunk-sizes",
        "two-content-lengths",
        "content-length-list",
        "two-content-lengths-last-fits",
        "negative-content-length",
        "plus-content-length",
        "0x-content-length",
        "underscore-content-length",
        "empty-content-length",
        "te-substring",
        "te-chunked-not-last",
        "te-other-coding",
        "te-chunked-twice",
        "te-and-content-length",
        "space-before-colon",
        "obsolete-line-folding",
        "four-digit-status",
        "status-below-100",
        "http-1.2",
    ],
)
async def test_malformed_framing_is_an_error_that_drops_the_connection(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool, reply: bytes, error: str
) -> None:
    server = await raw_server(answering(reply))
    with pytest.raises(NeuronHTTPError, match=error) as caught:
        response = await get(pool, server.origin)
        await response.read()
    assert not isinstance(caught.value, NoResponse)
    await eventually(lambda: server.client_closes == 1)


@pytest.mark.parametrize(
    "reply",
    [
        head(b"200 OK", b"Transfer-Encoding: Chunked") + chunks(b"hel", b"lo"),
        head(b"200 OK", b"transfer-encoding: chunked", b"x-empty:") + b"5;a=1;b\r\nhello\r\n0\r\n\r\n",
        head(b"200 OK", b"content-length: 5  ", b"x-padded: \t v \t") + b"hello",
    ],
    ids=["te-any-case", "extensions", "whitespace-around-values"],
)
async def test_valid_framing_shapes_that_look_odd_are_accepted(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool, reply: bytes
) -> None:
    server = await raw_server(answering(reply))
    assert await get_body(pool, server.origin) == b"hello"


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (head(b"200 OK", b"content-length: 5", b"content-length: 5") + b"hello", "Duplicate Content-Length"),
        (head(b"200 OK", b"content-length: 5 , 5") + b"hello", "in Content-Length"),
        (head(b"200 OK", TE) + b"5;a=1 ;b\r\nhello\r\n0\r\n\r\n", "chunk extension"),
        (head(b"200 OK", TE) + b"5 \r\nhello\r\n0\r\n\r\n", "chunk size"),
    ],
    ids=["same-content-length-twice", "same-content-length-listed", "space-in-extension", "space-after-size"],
)
async def test_shapes_the_rfc_tolerates_and_llhttp_refuses_are_errors(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool, reply: bytes, error: str
) -> None:
    """RFC 9110 §8.6 lets a recipient either merge equal Content-Length values or reject them,
    and RFC 9112 §7.1.1 allows whitespace around a chunk extension's ";". llhttp (as in Node,
    uvicorn and aiohttp) refuses them; no neuron server sends them, and a refusal cannot misframe."""
    server = await raw_server(answering(reply))
    with pytest.raises(NeuronHTTPError, match=error):
        response = await get(pool, server.origin)
        await response.read()
    await eventually(lambda: server.client_closes == 1)


ENDLESS = 8 * 1024 * 1024


@pytest.mark.parametrize(
    "start",
    [
        CHUNKED + b"1",
        CHUNKED + b"5;",
        CHUNKED + b"0\r\nx-trailer: ",
        CHUNKED + b"0\r\n" + b"x-t: 1\r\n" * 9000,
    ],
    ids=["chunk-size-without-crlf", "extension-without-crlf", "trailer-without-crlf", "endless-trailers"],
)
async def test_a_line_without_crlf_is_bounded(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool, start: bytes
) -> None:
    sent = 0

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
        nonlocal sent
        await read_request(reader)
        writer.write(start)
        filler = (b"0" if start.endswith(b"1") else b"a") * 65536
        while sent < ENDLESS:  # a broken neuron that never ends the line
            writer.write(filler)
            await writer.drain()
            sent += len(filler)
        return None

    server = await raw_server(script)
    with pytest.raises(NeuronHTTPError, match=r"without CRLF|too large|overflow") as caught:
        response = await get(pool, server.origin)
        await response.read()
    assert not isinstance(caught.value, NoResponse)
    # What the parser may hold (a trailer line, kept until its CRLF) never grew with the stream: it
    # gave up within the limit and one read (at most 256 KiB) past it.
    assert response._unframed <= MAX_HEAD_BYTES + 256 * 1024
    await eventually(lambda: server.client_closes == 1)
    assert sent < ENDLESS  # the gateway hung up instead of reading on
