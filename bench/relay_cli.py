"""The command line the relay anchors share: ``--port`` to serve, ``--upstream`` to relay to.

``bench/tcp_relay.py`` and ``bench/http_relay.py`` differ only in the protocol each client
connection gets; ``gateway_overhead.py --anchor`` starts either the same way.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable

import uvloop

Factory = Callable[[], asyncio.Protocol]


async def _serve(port: int, factory: Factory) -> None:
    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def run(description: str, client_factory: Callable[[str, int], Factory]) -> None:
    """Parse the command line and serve, on uvloop, a protocol per client connection made by
    ``client_factory(upstream_host, upstream_port)``, until interrupted."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="HOST:PORT")
    args = parser.parse_args()
    host, _, upstream_port = args.upstream.rpartition(":")
    uvloop.run(_serve(args.port, client_factory(host, int(upstream_port))))
