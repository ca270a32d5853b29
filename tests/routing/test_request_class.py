"""The request class travels to the neuron as ``x-cortex-request-class``, and only known words do."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from starlette.types import Receive, Scope, Send

from cortex_gateway.fleet import Fleet, Node, NodeModel
from cortex_gateway.neuron_http import NeuronHTTPError, NeuronResponse, Origin
from cortex_gateway.placement import Placement
from cortex_gateway.proxy import Forwarder
from cortex_gateway.route_hints import RoutingHeaders
from cortex_kernel.config.schema import Catalogue
from cortex_kernel.errors import UpstreamError
from cortex_kernel.routing import RouteHints


class RecordingPool:
    """A double of the relay's connection pool: records each request's header block, then fails
    it before the first byte (so the test needs no neuron)."""

    def __init__(self) -> None:
        self.blocks: list[bytes] = []

    async def request(
        self,
        origin: Origin,
        method: str,
        path: str,
        header_block: bytes,
        body: bytes,
        *,
        stall_timeout_s: float | None,
    ) -> NeuronResponse:
        self.blocks.append(header_block)
        raise NeuronHTTPError("recorded")


def _forwarder() -> tuple[Forwarder, RecordingPool]:
    node = Node(name="n1", endpoint="http://127.0.0.1:9", up=True)
    node.models["m"] = NodeModel(id="m", state="ready")
    placement = Placement(Fleet([node]), Catalogue(), session=None, headers={})  # type: ignore[arg-type]
    pool = RecordingPool()
    forwarder = Forwarder(
        placement,
        Catalogue(),
        pool,  # type: ignore[arg-type]  # a double of NeuronPool: only request() is called
        {"authorization": "Bearer t"},
        max_body_bytes=1024,
        stall_timeout_s=5,
        max_attempts=1,
    )
    return forwarder, pool


def _open(
    forwarder: Forwarder, hints: RouteHints | None, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        with pytest.raises(UpstreamError):
            await forwarder.open("/v1/chat/completions", "m", b'{"model": "m"}', hints=hints)

    middleware = RoutingHeaders(
        app, session_headers=["x-session-id"], class_header="x-claude-code-request-class"
    )
    # The app never receives or sends: it only opens the relay.
    asyncio.run(middleware({"type": "http", "headers": list(headers)}, None, None))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "hints, headers, expected",
    [
        (None, [(b"x-claude-code-request-class", b"subagent")], b"subagent"),
        (RouteHints(request_class="compaction"), [], b"compaction"),
        (RouteHints(request_class="auxiliary"), [(b"x-claude-code-request-class", b"main")], b"main"),
        (None, [(b"x-claude-code-request-class", b"evil\r\nx-injected: 1")], None),
        (None, [], None),
    ],
)
def test_the_request_class_is_forwarded_to_the_neuron(
    hints: RouteHints | None, headers: list[tuple[bytes, bytes]], expected: bytes | None
) -> None:
    forwarder, pool = _forwarder()
    _open(forwarder, hints, headers)
    (block,) = pool.blocks
    assert block.startswith(b"authorization: Bearer t\r\n")
    if expected is None:
        assert b"x-cortex-request-class" not in block and b"x-injected" not in block
    else:
        assert block.endswith(b"x-cortex-request-class: " + expected + b"\r\n")
