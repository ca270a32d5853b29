"""The least a Python HTTP/1.1 relay can do: llhttp on both sides, pooled upstream connections.

An anchor for ``gateway_overhead.py --anchor http-relay``, between ``tcp-relay`` (bytes, no HTTP)
and the gateway (HTTP, and an ASGI app with routing, placement, metrics and a task per request).
Each request is parsed with httptools (llhttp), sent on a keep-alive connection to the upstream
(a pool of idle ones, newest first), and its reply parsed with httptools again: the head is
written to the client at once, each piece of body framed as a chunk from the upstream's read
callback, the end written and the connection pooled again when llhttp says the reply is complete.
Every step is a protocol callback: no task, no future, no ASGI. It does what a relayed token
needs and nothing else (no stall timer, no limits, no tap), so the gap between it and
``tcp-relay`` is HTTP's share of a paced stream, and the gap between it and the gateway is
everything the gateway adds on top of HTTP.

    python bench/http_relay.py --port 8001 --upstream 127.0.0.1:8000
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import httptools
from relay_cli import run


class Upstream(asyncio.Protocol):
    """One keep-alive connection to the upstream; it relays one reply at a time to ``client``."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.transport: asyncio.Transport | None = None
        self.client: Client | None = None
        self.parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_headers_complete(self) -> None:
        client = self.client
        assert client is not None and client.transport is not None
        status = self.parser.get_status_code()
        client.transport.write(b"HTTP/1.1 %d OK\r\ntransfer-encoding: chunked\r\n\r\n" % status)

    def on_body(self, body: bytes) -> None:
        client = self.client
        assert client is not None and client.transport is not None
        client.transport.write(b"%x\r\n%b\r\n" % (len(body), body))

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        assert client is not None and client.transport is not None
        client.transport.write(b"0\r\n\r\n")
        self.parser = httptools.HttpResponseParser(self)
        self.relay.idle.append(self)

    def send(self, client: Client, request: bytes) -> None:
        assert self.transport is not None
        self.client = client
        self.transport.write(request)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.relay.idle:
            self.relay.idle.remove(self)
        if self.client is not None and self.client.transport is not None:
            self.client.transport.close()


class Client(asyncio.Protocol):
    """A client's keep-alive connection: each request it sends is relayed in turn."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        self.body.clear()
        method = self.parser.get_method()
        head = b"%b %b HTTP/1.1\r\nhost: %b\r\ncontent-type: application/json\r\n" % (
            method,
            self.url,
            self.relay.host_header,
        )
        request = head + b"content-length: %d\r\n\r\n%b" % (len(body), body)
        if self.relay.idle:
            self.relay.idle.pop().send(self, request)
        else:
            asyncio.get_running_loop().create_task(self.relay.connect_and_send(self, request))


class Relay:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.host_header = f"{host}:{port}".encode()
        self.idle: list[Upstream] = []

    async def connect_and_send(self, client: Client, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        _, upstream = await loop.create_connection(lambda: Upstream(self), self.host, self.port)
        upstream.send(client, request)


def _clients(host: str, port: int) -> Callable[[], asyncio.Protocol]:
    relay = Relay(host, port)
    return lambda: Client(relay)


if __name__ == "__main__":
    run(__doc__ or "", _clients)
