"""The neuron's control-plane replies (``/discovery``, ``/health``, ``/models``, ``/models/load``)
as typed messages, shared by the neuron that writes them and the gateway that reads them.

They live in the kernel because both sides import them and plugins do not import each other.
Decoding is strict on types (an ``in_flight`` of ``"many"`` is an error, never a value that
breaks arithmetic later) and tolerant of fields it does not know, so a neuron can grow its
replies without breaking older gateways. A reply that fails to decode is one failed poll of
that node, not a crash.
"""

from __future__ import annotations

from typing import Any

import msgspec

# The header a gateway sets on a request to a neuron to name its request class (``main``,
# ``subagent``, ``compaction``, ``auxiliary``; absent or unknown is ``main``): the neuron's
# admission queue serves higher classes first under contention (docs/neuron.md).
REQUEST_CLASS_HEADER = "x-cortex-request-class"


class Device(msgspec.Struct, kw_only=True):
    """One GPU as ``/discovery`` describes it."""

    index: int
    name: str = ""
    uuid: str = ""
    memory_total_bytes: int = 0
    memory_free_bytes: int = 0
    memory_used_bytes: int = 0
    utilization_pct: int | None = None
    compute_capability: str | None = None


class Discovery(msgspec.Struct, kw_only=True):
    """``GET /discovery``: what the host is; read once per (re)connection.

    Only ``devices`` steers placement; the descriptive fields default to empty so that a minimal
    node daemon (or an older one) is still polled."""

    hostname: str = ""
    os: str = ""
    kernel: str = ""
    python: str = ""
    driver_version: str | None = None
    cuda_version: str | None = None
    devices: list[Device] = msgspec.field(default_factory=list)
    gpu_unavailable_reason: str | None = None
    harnesses: list[str] = msgspec.field(default_factory=list)


class DeviceMemory(msgspec.Struct, kw_only=True):
    """One GPU's live figures in ``/health``."""

    index: int
    memory_free_bytes: int | None = None
    memory_used_bytes: int | None = None
    utilization_pct: int | None = None


class ModelLoad(msgspec.Struct, kw_only=True):
    """One model's live admission counts in ``/health``."""

    state: str = "ready"
    in_flight: int = 0
    queued: int = 0
    engine: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET  # vLLM's own figures; absent if none


class HostMemory(msgspec.Struct, kw_only=True):
    """``/health``'s memory: the device budget and what non-sleeping models reserve of it, the
    host's free RAM, and the host-RAM budget and what sleeping models hold of it."""

    budget_bytes: int | None = None
    reserved_bytes: int | None = None
    available_bytes: int | None = None
    host_budget_bytes: int | None = None
    host_reserved_bytes: int | None = None


class ActivationState(msgspec.Struct, kw_only=True):
    """Progress of loading the neuron's default models after its listener bound."""

    state: str
    pending: int = 0
    in_progress: str | None = None
    completed: int = 0
    failed: list[str] = msgspec.field(default_factory=list)


class Health(msgspec.Struct, kw_only=True):
    """``GET /health``."""

    status: str = "ok"
    name: str | None = None
    uptime_s: float | None = None
    activation: ActivationState | None = None
    models: dict[str, ModelLoad] = msgspec.field(default_factory=dict)
    lifecycle_cycles: int = 0
    rss_bytes: int | None = None
    max_rss_bytes: int | None = None
    memory: HostMemory = msgspec.field(default_factory=HostMemory)
    devices: list[DeviceMemory] = msgspec.field(default_factory=list)


class ModelEntry(msgspec.Struct, kw_only=True):
    """One model in ``GET /models``, and the reply to ``POST /models/load``."""

    id: str
    state: str = "ready"
    harness: str | None = None
    task: str | None = None
    devices: list[int] = msgspec.field(default_factory=list)
    memory_bytes: int | None = None
    context_length: int | None = None
    max_prompt_bytes: int | None = None
    last_error: str | None = None
    load_seconds: float | None = None
    last_used: float | None = None
    in_flight: int = 0
    queued: int = 0


class ModelList(msgspec.Struct, kw_only=True):
    """``GET /models``."""

    data: list[ModelEntry] = msgspec.field(default_factory=list)
    object: str = "list"


class ErrorDetail(msgspec.Struct, kw_only=True):
    message: str = ""
    type: str | None = None
    code: str | None = None


class ErrorReply(msgspec.Struct, kw_only=True):
    """The error envelope of a refused control-plane call."""

    error: ErrorDetail = msgspec.field(default_factory=ErrorDetail)
