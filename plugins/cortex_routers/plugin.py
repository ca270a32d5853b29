"""Entry point of the built-in routers: they read their settings from ``[routing]``."""

from __future__ import annotations

from cortex_kernel.hookspecs import hookimpl
from cortex_kernel.kernel import Kernel
from cortex_kernel.routing import Router
from cortex_routers.affinity import Affinity, KvAware
from cortex_routers.least_loaded import LeastLoaded


@hookimpl(trylast=True)
def register_routers(kernel: Kernel) -> list[Router]:
    settings = kernel.config.value.routing
    return [
        LeastLoaded(),
        Affinity(epsilon=settings.load_epsilon, max_sessions=settings.max_sessions),
        KvAware(
            epsilon=settings.load_epsilon,
            max_sessions=settings.max_sessions,
            kv_full_ratio=settings.kv_full_ratio,
        ),
    ]
