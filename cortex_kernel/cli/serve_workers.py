"""``cortex-kernel serve`` with ``[gateway] workers`` above 1: one gateway per worker process.

The supervision itself (sockets, signals, restarts) is :mod:`cortex_kernel.workers`; this module
only says what one worker runs, which is what a single gateway runs, on the sockets it is given.
"""

from __future__ import annotations

import logging
from typing import Any

import pluggy

from cortex_kernel.app import collect_parts, create_app, require_role_part
from cortex_kernel.config.addresses import parse_listen
from cortex_kernel.config.errors import ConfigError
from cortex_kernel.config.loader import LoadedConfig
from cortex_kernel.event_loops import LoopFactory
from cortex_kernel.kernel import Kernel
from cortex_kernel.plugins import PluginError
from cortex_kernel.serving import Listener, ListenError, run_until_signalled, serve_forever
from cortex_kernel.workers import WorkerFatal, WorkerSockets, bind_workers, supervise

log = logging.getLogger(__name__)


def _workers_error(loaded: LoadedConfig[Any], problem: str, expected: str) -> ConfigError:
    origin = loaded.sources.get("gateway.workers", "")
    source, line = (origin[5:], None) if origin.startswith("file ") else (origin or None, None)
    if source and origin.startswith("file ") and source.rpartition(":")[2].isdigit():
        source, _, number = source.rpartition(":")
        line = int(number)
    return ConfigError(problem, source=source, key="gateway.workers", line=line, expected=expected)


def serve_workers(loaded: LoadedConfig[Any], pm: pluggy.PluginManager, factory: LoopFactory | None) -> int:
    """Bind the workers' sockets, fork the workers and supervise them; return the exit status."""
    gateway = loaded.value.gateway
    if not loaded.value.neurons:
        raise _workers_error(
            loaded,
            f"{gateway.workers} workers need [[neurons]]: the embedded neuron runs in one process",
            "workers = 1, or [[neurons]] entries",
        )
    limits = loaded.value.limits

    def worker(index: int, own: WorkerSockets) -> int:
        try:
            return serve_one(index, own)
        except (ConfigError, PluginError) as exc:  # the same in every worker and every restart
            raise WorkerFatal(str(exc)) from exc

    def serve_one(index: int, own: WorkerSockets) -> int:
        kernel = Kernel(role="gateway", config=loaded, pm=pm, worker=index)
        parts = collect_parts(kernel)
        require_role_part(kernel, parts)
        listeners = [
            Listener(create_app(kernel, parts), own.api_address, "gateway", limits, own.api, gateway.server)
        ]
        if own.metrics is not None and own.metrics_address is not None:
            if any(part.listener == "metrics" for part in parts):
                metrics_app = create_app(kernel, parts, listener="metrics")
                listeners.append(
                    Listener(metrics_app, own.metrics_address, "metrics", limits, own.metrics, gateway.server)
                )
            else:
                own.metrics.close()
        try:
            run_until_signalled(serve_forever(listeners, gateway.shutdown_grace_s, [kernel.drain]), factory)
        except ListenError as exc:
            log.error("gateway worker %d: %s", index, exc)
            return 1
        return 0

    api, metrics = parse_listen(gateway.listen), parse_listen(gateway.metrics_listen)
    return supervise(bind_workers(api, metrics, gateway.workers), worker)
