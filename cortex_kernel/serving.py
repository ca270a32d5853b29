"""Serving ASGI apps with hypercorn, with a bounded graceful shutdown on SIGTERM and SIGINT.

On a signal the listeners stop accepting, in-flight requests (streams included) get up to
``grace_s`` seconds to finish, then the lifespans shut down (the neuron unloads its models
there) and the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, cast

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from hypercorn.typing import ASGIFramework
from starlette.types import ASGIApp

from cortex_kernel.config.addresses import ListenAddress
from cortex_kernel.drain import Drain

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
    # No "server: hypercorn-h11" on every reply: it advertises a version and costs time per request.
    config.include_server_header = False
    return config


async def serve_forever(listeners: Sequence[Listener], grace_s: float, drains: Sequence[Drain] = ()) -> None:
    """Serve every listener until SIGTERM/SIGINT, then drain within ``grace_s`` seconds.

    ``drains`` (one per kernel served) learn of the signal and the deadline at the same moment."""
    for listener in listeners:
        _check_bindable(listener.address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        for drain in drains:
            drain.begin(grace_s)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
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


def _check_bindable(address: ListenAddress) -> None:
    """Fail before any listener starts when one address is taken, so a half-started daemon
    never has to unwind the others (and nothing but one clear line reaches the operator)."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address.host, address.port))
        except OSError as exc:
            raise ListenError(f"cannot listen on {address.bind()}: {exc.strerror or exc}") from exc


class ListenError(Exception):
    """A listener could not bind; the CLI reports it in one line and exits non-zero."""


def run_until_signalled(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` to completion, turning a failed bind into :class:`ListenError`."""
    try:
        asyncio.run(main)
    except OSError as exc:
        raise ListenError(f"cannot listen: {exc.strerror or exc}") from exc
