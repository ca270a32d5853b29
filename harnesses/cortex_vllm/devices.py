"""GPUs as the harness sees them: which ones an engine uses, who may start on them, what they hold.

Everything here reads the devices through NVML only. NVML is a management library: it never
creates a CUDA context, so the neuron process stays free of CUDA (vLLM runs its engine core in a
child process, and a parent that had initialised CUDA would force vLLM to ``spawn`` instead of
``fork`` it). Profiles name GPUs by their NVML index, the order ``/discovery`` lists them in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, Protocol

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# Below this, a difference in device memory is noise (allocator slack, another tenant's blip).
_NOISE_BYTES = 64 * MIB


class DeviceLocks:
    """One lock per GPU: engines sharing a GPU start (and wake) one at a time.

    vLLM sizes an engine's KV cache by profiling the free memory of its GPUs while it starts;
    two engines profiling the same GPU at once each count the other's allocations wrongly
    (vllm#9198, #10643). Locks are taken in index order, so two multi-GPU starts cannot
    deadlock.
    """

    def __init__(self) -> None:
        self._locks: dict[int, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def hold(self, devices: Iterable[int]) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for device in sorted(set(devices)):
                await stack.enter_async_context(self._locks.setdefault(device, asyncio.Lock()))
            yield

    def busy(self, device: int) -> bool:
        lock = self._locks.get(device)
        return lock is not None and lock.locked()


class MemoryProbe(Protocol):
    """Reads GPU facts; blocking, so the harness calls it in a thread."""

    def used_bytes(self, devices: Sequence[int]) -> dict[int, int] | None:
        """Memory in use on each device, or ``None`` when the devices cannot be read."""
        ...

    def uuids(self, devices: Sequence[int]) -> list[str] | None:
        """The devices' UUIDs, or ``None`` when they cannot be read."""
        ...


class NvmlProbe:
    """:class:`MemoryProbe` over NVML (``nvidia-ml-py``); ``None`` wherever NVML is missing."""

    def used_bytes(self, devices: Sequence[int]) -> dict[int, int] | None:
        with _nvml() as nvml:
            if nvml is None:
                return None
            try:
                return {
                    index: int(nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(index)).used)
                    for index in devices
                }
            except Exception as exc:  # an index past the last GPU, a GPU that fell off the bus
                log.warning("NVML could not read the memory of GPUs %s: %s", list(devices), exc)
                return None

    def uuids(self, devices: Sequence[int]) -> list[str] | None:
        with _nvml() as nvml:
            if nvml is None:
                return None
            try:
                raw = [nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(index)) for index in devices]
            except Exception as exc:
                log.warning("NVML could not read the UUIDs of GPUs %s: %s", list(devices), exc)
                return None
            return [value.decode() if isinstance(value, bytes) else str(value) for value in raw]


def count_gpus() -> tuple[int, str]:
    """How many NVIDIA GPUs NVML sees, and if none, why."""
    with _nvml() as nvml:
        if nvml is None:
            return 0, "NVML is unavailable (no nvidia-ml-py, no driver, or no GPU)"
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:
            return 0, f"NVML could not count GPUs: {exc}"
        return count, "" if count else "NVML reports no GPUs"


@contextlib.contextmanager
def _nvml() -> Iterator[Any]:
    """The initialised ``pynvml`` module, or ``None`` when NVML or its driver is missing."""
    try:
        import pynvml
    except ImportError:
        yield None
        return
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        log.debug("NVML unavailable: %s", exc)
        yield None
        return
    try:
        yield pynvml
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def engine_devices(devices: Sequence[int] | None, world_size: int) -> list[int]:
    """The NVML indices of the GPUs an engine uses on this host.

    A profile's ``devices`` are NVML indices already. Without them vLLM takes the first
    ``world_size`` GPUs the process can see, which ``CUDA_VISIBLE_DEVICES`` (if the neuron runs
    with it) maps to NVML indices; a UUID or MIG entry there cannot be mapped, and those GPUs
    are then assumed to be the first ones.
    """
    if devices:
        return list(devices)
    visible = [part.strip() for part in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if part.strip()]
    if visible and all(part.isdigit() for part in visible):
        return [int(part) for part in visible[:world_size]]
    return list(range(world_size))


def held_bytes(before: dict[int, int] | None, after: dict[int, int] | None) -> dict[int, int]:
    """Per device, the memory that appeared between two readings (never negative)."""
    if before is None or after is None:
        return {}
    return {device: max(0, after[device] - before.get(device, after[device])) for device in after}


def still_held(
    before: dict[int, int], now: dict[int, int], expected: dict[int, int], fraction: float = 0.9
) -> dict[int, int]:
    """Devices on which less than ``fraction`` of the ``expected`` release happened, and by how much.

    ``before`` is the reading just before the engine went away and ``expected`` what it held
    then; memory another process allocated meanwhile can hide a release, never fake one.
    """
    missing: dict[int, int] = {}
    for device, held in expected.items():
        if held < _NOISE_BYTES:
            continue
        released = before.get(device, 0) - now.get(device, 0)
        if released < fraction * held:
            missing[device] = held - max(0, released)
    return missing


async def wait_released(
    probe: MemoryProbe,
    before: dict[int, int] | None,
    expected: dict[int, int],
    timeout_s: float,
    *,
    interval_s: float = 0.25,
) -> dict[int, int]:
    """Poll NVML until the memory an engine held is back; return what is still missing (``{}``: all).

    The driver frees a process's memory when the process exits, a moment after vLLM's
    ``shutdown`` returns, so a single reading right away would often be a false alarm.
    """
    if before is None or not expected:
        return {}
    deadline = time.monotonic() + timeout_s
    while True:
        now = await asyncio.to_thread(probe.used_bytes, sorted(expected))
        if now is None:
            return {}
        missing = still_held(before, now, expected)
        if not missing or time.monotonic() >= deadline:
            return missing
        await asyncio.sleep(interval_s)
