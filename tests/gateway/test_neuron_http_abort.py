"""``NeuronPool.abort``: what the relay does when the gateway declares a neuron down.

Against real loopback servers that accept a request and then answer nothing more, as a frozen
(SIGSTOP) neuron does. The servers and helpers are those of ``test_neuron_http``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from cortex_gateway.neuron_http import NeuronHTTPError, NeuronPool, NoResponse
from tests.gateway import test_neuron_http as relay_tests
from tests.gateway.scripted_server import CHUNKED, RawServer, answering, eventually, get, read_request

# The same fixtures as the relay's own tests: real pools and scripted loopback servers.
make_pool = relay_tests.make_pool
pool = relay_tests.pool
raw_server = relay_tests.raw_server


async def test_a_request_waiting_for_its_head_fails_at_once_and_is_not_retried(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # and never answer

    server = await raw_server(script)
    waiting = asyncio.ensure_future(get(pool, server.origin, stall_s=60))
    await eventually(lambda: server.connections == 1)
    pool.abort(server.origin, "node n1 was declared down")
    with pytest.raises(NeuronHTTPError, match="declared down") as caught:
        await asyncio.wait_for(waiting, 1)
    # Not NoResponse: the pool must not retry it on a fresh connection to the same node.
    assert not isinstance(caught.value, NoResponse)
    assert server.connections == 1
    await eventually(lambda: server.client_closes == 1)
    assert pool.busy(server.origin) == 0


async def test_a_body_in_progress_hands_over_what_arrived_then_fails(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    server = await raw_server(answering(CHUNKED + b"5\r\nfirst\r\n"))
    response = await get(pool, server.origin, stall_s=60)
    await eventually(lambda: bool(response._pieces))
    pool.abort(server.origin, "node n1 was declared down")
    assert await response.next_piece() == b"first"
    with pytest.raises(NeuronHTTPError, match="declared down"):
        await asyncio.wait_for(response.next_piece(), 1)
    await eventually(lambda: server.client_closes == 1)
    assert pool.busy(server.origin) == 0


async def test_a_request_connecting_when_its_node_is_declared_down_fails_too(
    raw_server: Callable[..., Awaitable[RawServer]], pool: NeuronPool
) -> None:
    server = await raw_server(answering(CHUNKED + b"0\r\n\r\n"))
    connecting = asyncio.ensure_future(get(pool, server.origin, stall_s=60))
    await asyncio.sleep(0)  # the request is connecting
    pool.abort(server.origin, "node n1 was declared down")  # before its connection exists
    with pytest.raises(NeuronHTTPError, match="declared down"):
        await asyncio.wait_for(connecting, 1)
    # A request sent after the abort (the node answers again) goes through.
    response = await get(pool, server.origin)
    assert response.status == 200 and await response.read() == b""
