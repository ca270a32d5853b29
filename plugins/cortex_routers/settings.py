"""The built-in routers' own configuration tables: ``[routing.affinity]`` and ``[routing.kv_aware]``.

Each router reads its settings from the sub-table of ``[routing]`` named after it, so an operator
finds them next to the ``strategy`` that picks the router, and a router that is not in use has
nothing to say in ``[routing]``. ``kv_aware`` is affinity that also reads the engine's gauges, so
its table has affinity's keys as well as its own; the two tables are independent.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from cortex_kernel.config.tables import ConfigTable


class AffinitySettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """``[routing.affinity]``.

    ``load_epsilon`` is the ε of the load bound: a session leaves its replica only while that
    replica holds more than (1 + ε) x the mean load. ``max_sessions`` bounds the sessions the
    router remembers (least recently routed forgotten first).
    """

    load_epsilon: Annotated[float, msgspec.Meta(ge=0)] = 0.25
    max_sessions: Annotated[int, msgspec.Meta(ge=1)] = 65536


class KvAwareSettings(AffinitySettings, frozen=True):
    """``[routing.kv_aware]``: affinity's keys, and ``kv_full_ratio``, the engine KV-cache usage
    at which a replica is treated as full."""

    kv_full_ratio: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.9


AFFINITY_TABLE = ConfigTable("routing.affinity", AffinitySettings)
KV_AWARE_TABLE = ConfigTable("routing.kv_aware", KvAwareSettings)
