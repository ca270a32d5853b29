"""Serving ASGI apps with hypercorn's protocols or the kernel's own HTTP/1.1 one on httptools
(``server = "httptools"``, :mod:`cortex_kernel.http11`), with a bounded graceful shutdown on
SIGTERM and SIGINT.

On a signal the listeners stop accepting, in-flight requests (streams included) get up to
``grace_s`` seconds to finish, then the lifespans shut down (the neuron unloads its models
there) and the process exits.

The accept loop is our own (hypercorn's ``worker_serve``, cut down to plain-TCP listeners), so
that it can count connections and refuse those over ``max_connections`` by closing them at once,
and hand each accepted socket to :class:`~cortex_kernel.connection.Connection`, which holds it to
the other ``[limits]`` bounds.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import resource
import signal
import socket
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from hypercorn.asyncio.lifespan import Lifespan
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config as HypercornConfig
from hypercorn.typing import ASGIFramework, LifespanState
from hypercorn.utils import wrap_app
from starlette.types import ASGIApp

from cortex_kernel.config.addresses import ListenAddress
from cortex_kernel.config.schema import ConnectionLimits
from cortex_kernel.connection import Connection
from cortex_kernel.drain import Drain
from cortex_kernel.event_loops import LoopFactory
from cortex_kernel.http11_site import Site, serve_http11
from cortex_kernel.lanes import direct_routes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listener:
    """One app on one address; ``sock``, when given, is that address already bound and listening
    (a worker's share of ``[gateway] workers``, see :mod:`cortex_kernel.workers`)."""

    app: ASGIApp
    address: ListenAddress
    name: str
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    sock: socket.socket | None = None
    server: Literal["hypercorn", "httptools"] = "httptools"  # see [gateway] server


def server_of(listener: Listener) -> str:
    """The server protocol that serves ``listener``: h2c is hypercorn's alone."""
    return "httptools" if listener.server == "httptools" and not listener.limits.allow_h2c else "hypercorn"


def _hypercorn_config(listener: Listener, grace_s: float) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [listener.address.bind()]
    config.graceful_timeout = grace_s
    config.keep_alive_timeout = listener.limits.keep_alive_timeout_s
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
        if listener.sock is None:
            check_bindable(listener.address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(ResourceErrorLog())

    def on_signal() -> None:
        for drain in drains:
            drain.begin(grace_s)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    try:
        for listener in listeners:
            log.info("%s listening on %s (%s)", listener.name, listener.address.bind(), server_of(listener))
        await asyncio.gather(*(_serve(listener, grace_s, stop) for listener in listeners))
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        loop.set_exception_handler(previous_handler)


def connection_cap(limits: ConnectionLimits, name: str) -> int:
    """``max_connections``, lowered to half the open-file limit when that is the tighter bound.

    Half, because a gateway's client connection usually pairs with one to a neuron, and the
    process needs descriptors for its own files and polls; past the cap a connection is refused
    cheaply, while past the descriptor limit accept() itself fails.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or limits.max_connections <= soft // 2:
        return limits.max_connections
    cap = max(1, soft // 2)
    log.warning(
        "%s: limits.max_connections %d lowered to %d, half the open-file limit (%d); raise the "
        "limit (LimitNOFILE= in the unit) to allow more",
        name,
        limits.max_connections,
        cap,
        soft,
    )
    return cap


async def _serve(listener: Listener, grace_s: float, stop: asyncio.Event) -> None:
    """Serve one listener until ``stop`` is set, then drain: hypercorn's ``worker_serve``, ours."""
    config = _hypercorn_config(listener, grace_s)
    app = wrap_app(cast(ASGIFramework, listener.app), config.wsgi_max_body_size, "asgi")
    loop = asyncio.get_running_loop()
    state: LifespanState = {}
    lifespan = Lifespan(app, config, loop, state)
    lifespan_task = loop.create_task(lifespan.handle_lifespan())
    await lifespan.wait_for_startup()
    if lifespan_task.done() and (failure := lifespan_task.exception()) is not None:
        raise failure

    limits = listener.limits
    cap = connection_cap(limits, listener.name)
    sockets = [listener.sock] if listener.sock else config.create_sockets().insecure_sockets
    if server_of(listener) == "httptools":
        site = Site(listener.app, state, limits, cap, listener.name, direct_routes(listener.app))
        try:
            await serve_http11(site, sockets, config.backlog, stop, config.graceful_timeout)
        finally:
            await lifespan.wait_for_shutdown()
            lifespan_task.cancel()
            await lifespan_task
        return
    context = WorkerContext(None)
    connections: set[asyncio.Task[None]] = set()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(connections) >= cap:
            writer.transport.abort()  # refused: no task, no parser, no buffer
            return
        task = cast("asyncio.Task[None]", asyncio.current_task())
        connections.add(task)
        task.add_done_callback(connections.discard)
        await Connection(app, config, context, state, limits, reader, writer).run()

    servers = [await asyncio.start_server(accepted, backlog=config.backlog, sock=sock) for sock in sockets]
    try:
        await stop.wait()
    finally:
        await context.terminated.set()
        for server in servers:
            server.close()
            await server.wait_closed()
        draining = asyncio.gather(*connections)
        try:
            await asyncio.wait_for(draining, config.graceful_timeout)
        except TimeoutError:
            pass
        finally:
            if draining.done() and not draining.cancelled():
                draining.exception()  # retrieved, so asyncio does not warn that nobody did
            await lifespan.wait_for_shutdown()
            lifespan_task.cancel()
            await lifespan_task


RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class ResourceErrorLog:
    """The loop's exception handler: running out of descriptors is logged once per interval.

    asyncio reports every failed ``accept()`` (``socket.accept() out of system resource``) with
    a traceback, which under a connection flood grows the log by megabytes a second while the
    daemon can do nothing about it; one line per interval with a count says the same.
    """

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self.next_report = 0.0
        self.suppressed = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not (isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS):
            loop.default_exception_handler(context)
            return
        now = loop.time()
        if now < self.next_report:
            self.suppressed += 1
            return
        log.error(
            "%s: %s (%d more like it since the last report; see limits.max_connections)",
            context.get("message", "out of system resources"),
            exc.strerror,
            self.suppressed,
        )
        self.suppressed = 0
        self.next_report = now + self.interval_s


def check_bindable(address: ListenAddress) -> None:
    """Fail before any listener starts when one address is taken, so a half-started daemon
    never has to unwind the others (and nothing but one clear line reaches the operator)."""
    bind_socket(address).close()


def bind_socket(
    address: ListenAddress, *, reuse_port: bool = False, backlog: int | None = None
) -> socket.socket:
    """A TCP socket bound to ``address`` with ``SO_REUSEADDR`` (and ``SO_REUSEPORT`` when asked),
    listening when ``backlog`` is given: the one place that turns a taken address into the
    :class:`ListenError` the CLI prints, for the start-up probe and the workers' own sockets alike."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address.host, address.port))
        if backlog is not None:
            sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {address.bind()}: {exc.strerror or exc}") from exc
    return sock


class ListenError(Exception):
    """A listener could not bind; the CLI reports it in one line and exits non-zero."""


def run_until_signalled(main: Coroutine[Any, Any, None], loop_factory: LoopFactory | None = None) -> None:
    """Run ``main`` to completion (on ``loop_factory``'s loop when given), turning a failed bind
    into :class:`ListenError`. A daemon's last step: it leaves every object to the process's exit."""
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(main)
    except OSError as exc:
        raise ListenError(f"cannot listen: {exc.strerror or exc}") from exc
    # The daemon has drained and closed everything it owns. What is left is the interpreter's
    # own teardown, whose final garbage collection walks every object torch and transformers
    # made (seconds on a neuron that held a model, after its SIGTERM was already answered):
    # frozen objects are left to the process's exit instead.
    gc.freeze()
