"""What this host is: name, OS, GPUs through NVML. A host without GPUs is normal, not an error."""

from __future__ import annotations

import contextlib
import platform
import socket
from typing import Any

from cortex_kernel.node_wire import Device, Discovery

__all__ = ["Device", "Discovery", "discover", "read_devices"]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_devices() -> tuple[list[Device], str | None, str | None, str | None]:
    """Devices, driver version, CUDA version and, when there are none, the reason why."""
    try:
        import pynvml
    except ImportError:
        return [], None, None, "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return [], None, None, f"NVML unavailable: {exc}"
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda_raw = pynvml.nvmlSystemGetCudaDriverVersion()
        cuda = f"{cuda_raw // 1000}.{(cuda_raw % 1000) // 10}"
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                utilization: int | None = int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except Exception:
                utilization = None
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            devices.append(
                Device(
                    index=index,
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    memory_total_bytes=int(memory.total),
                    memory_free_bytes=int(memory.free),
                    memory_used_bytes=int(memory.used),
                    utilization_pct=utilization,
                    compute_capability=f"{major}.{minor}",
                )
            )
        return devices, driver, cuda, None if devices else "NVML reports no GPUs"
    except Exception as exc:
        return [], None, None, f"NVML query failed: {exc}"
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def discover(harnesses: list[str]) -> Discovery:
    """Describe this host; never raises."""
    devices, driver, cuda, reason = read_devices()
    uname = platform.uname()
    return Discovery(
        hostname=socket.gethostname(),
        os=uname.system,
        kernel=uname.release,
        python=platform.python_version(),
        driver_version=driver,
        cuda_version=cuda,
        devices=devices,
        gpu_unavailable_reason=reason,
        harnesses=sorted(harnesses),
    )
