"""Entry point of the built-in routers: each reads its settings from its own ``[routing.NAME]`` table."""

from __future__ import annotations

import msgspec

from cortex_kernel.config.tables import ConfigTable
from cortex_kernel.hookspecs import hookimpl
from cortex_kernel.kernel import Kernel
from cortex_kernel.routing import Router
from cortex_routers.affinity import Affinity, KvAware
from cortex_routers.least_loaded import LeastLoaded
from cortex_routers.settings import AFFINITY_TABLE, KV_AWARE_TABLE


@hookimpl
def register_config_tables() -> list[ConfigTable[msgspec.Struct]]:
    return [AFFINITY_TABLE, KV_AWARE_TABLE]


@hookimpl(trylast=True)
def register_routers(kernel: Kernel) -> list[Router]:
    affinity = kernel.config.table(AFFINITY_TABLE)
    kv_aware = kernel.config.table(KV_AWARE_TABLE)
    return [
        LeastLoaded(),
        Affinity(epsilon=affinity.load_epsilon, max_sessions=affinity.max_sessions),
        KvAware(
            epsilon=kv_aware.load_epsilon,
            max_sessions=kv_aware.max_sessions,
            kv_full_ratio=kv_aware.kv_full_ratio,
        ),
    ]
