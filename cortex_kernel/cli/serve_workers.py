"""``cortex-kernel serve`` with ``[gateway] workers`` above 1: one gateway per worker process.

The supervision itself (sockets, signals, restarts) is :mod:`cortex_kernel.workers`; this module
only says what one worker runs, which is what a single gateway runs, on the sockets it is given.
"""

from __future__ import annotations

import logging
from typing import Any

import pluggy

from cortex_kernel.cli.gateway_listeners import gateway_listeners
from cortex_kernel.config.addresses import parse_listen
from cortex_kernel.config.errors import ConfigError
from cortex_kernel.config.loader import LoadedConfig
from cortex_kernel.event_loops import LoopFactory
from cortex_kernel.kernel import Kernel
from cortex_kernel.plugins import PluginError
from cortex_kernel.serving import ListenError, run_until_signalled, serve_forever
from cortex_kernel.workers import WorkerFatal, WorkerSockets, bind_workers, supervise

log = logging.getLogger(__name__)


def serve_workers(loaded: LoadedConfig[Any], pm: pluggy.PluginManager, factory: LoopFactory | None) -> int:
    """Bind the workers' sockets, fork the workers and supervise them; return the exit status."""
    gateway = loaded.value.gateway
    if not loaded.value.neurons:
        raise loaded.error_at(
            "gateway.workers",
            f"{gateway.workers} workers need [[neurons]]: the embedded neuron runs in one process",
            "workers = 1, or [[neurons]] entries",
        )

    def worker(index: int, own: WorkerSockets) -> int:
        try:
            return serve_one(index, own)
        except (ConfigError, PluginError) as exc:  # the same in every worker and every restart
            raise WorkerFatal(str(exc)) from exc

    def serve_one(index: int, own: WorkerSockets) -> int:
        kernel = Kernel(role="gateway", config=loaded, pm=pm, worker=index)
        metrics_address = own.metrics_address if own.metrics is not None else None
        api_listener, metrics_listener = gateway_listeners(
            kernel, own.api_address, metrics_address, api_sock=own.api, metrics_sock=own.metrics
        )
        listeners = [api_listener]
        if metrics_listener is not None:
            listeners.append(metrics_listener)
        elif own.metrics is not None:
            own.metrics.close()
        try:
            run_until_signalled(serve_forever(listeners, gateway.shutdown_grace_s, [kernel.drain]), factory)
        except ListenError as exc:
            log.error("gateway worker %d: %s", index, exc)
            return 1
        return 0

    api, metrics = parse_listen(gateway.listen), parse_listen(gateway.metrics_listen)
    return supervise(bind_workers(api, metrics, gateway.workers), worker)
