"""Serving ASGI apps with hypercorn, with a bounded graceful shutdown on SIGTERM and SIGINT.

On a signal the listeners stop accepting, in-flight requests (streams included) get up to
``grace_s`` seconds to finish, then the lifespans shut down (the neuron unloads its models
there) and the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from hypercorn.typing import ASGIFramework
from starlette.types import ASGIApp

from cortex_kernel.config.addresses import ListenAddress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listener:
    """One app on one address."""

    app: ASGIApp
    address: ListenAddress
    name: str


def _hypercorn_config(listener: Listener, grace_s: float) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [listener.address.bind()]
    config.graceful_timeout = grace_s
    config.keep_alive_timeout = 75
    config.accesslog = None
    config.errorlog = logging.getLogger(f"hypercorn.{listener.name}")
    # The neuron's and gateway's own timeouts govern streams; hypercorn must not cut them short.
    config.read_timeout = None
    config.h11_max_incomplete_size = 64 * 1024
    return config


async def serve_forever(listeners: Sequence[Listener], grace_s: float) -> None:
    """Serve every listener until SIGTERM/SIGINT, then drain within ``grace_s`` seconds."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        for listener in listeners:
            log.info("%s listening on %s", listener.name, listener.address.bind())
        servers = [
            hypercorn_serve(
                cast(ASGIFramework, listener.app),
                _hypercorn_config(listener, grace_s),
                shutdown_trigger=stop.wait,
            )
            for listener in listeners
        ]
        await asyncio.gather(*servers)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
