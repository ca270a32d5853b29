"""From a model profile and its options to vLLM's ``AsyncEngineArgs``.

Each engine setting has exactly one home: a profile field (``context_length``, ``quant``,
``devices``, ...), a named harness option (``tensor_parallel_size``, ``gpu_memory_utilization``,
...), or, for everything else vLLM offers, the free-form ``engine_args`` table. That table is
checked against the fields of the installed ``AsyncEngineArgs``, so a misspelt or retired
argument is an error naming it rather than a silent no-op, and it may not set what a profile
field or a named option already sets, so two settings can never disagree.

GPUs are handed to vLLM as ``device_ids`` (by UUID when NVML can read them) instead of through
``CUDA_VISIBLE_DEVICES``: the environment is process-wide, and one neuron process starts many
engines on different GPUs; ``device_ids`` travels inside the engine's own configuration to its
engine-core and worker processes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from vllm.engine.arg_utils import AsyncEngineArgs

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.errors import BadRequest
from cortex_vllm.devices import engine_devices
from cortex_vllm.options import VllmOptions

# Engine arguments that a profile field or a named option sets, and where to set them instead.
RESERVED: dict[str, str] = {
    "model": "the profile's 'source'",
    "tokenizer": "the profile's 'source'",
    "served_model_name": "the profile's 'id'",
    "trust_remote_code": "the profile's 'trust_remote_code'",
    "device_ids": "the profile's 'devices'",
    "max_model_len": "the profile's 'context_length'",
    "quantization": "the profile's 'quant'",
    "tensor_parallel_size": "the option 'tensor_parallel_size'",
    "pipeline_parallel_size": "the option 'pipeline_parallel_size'",
    "distributed_executor_backend": "the option 'multi_host'",
    "gpu_memory_utilization": "the option 'gpu_memory_utilization'",
    "kv_cache_memory_bytes": "the option 'kv_cache_memory_bytes'",
    "dtype": "the option 'dtype'",
    "enforce_eager": "the option 'enforce_eager'",
    "enable_prefix_caching": "the option 'enable_prefix_caching'",
    "enable_sleep_mode": "the option 'sleep_mode'",
    "reasoning_parser": "the option 'reasoning_parser'",
    "download_dir": "the option 'hub_cache_dir'",
    "disable_log_stats": "the harness (it reads the engine's statistics itself)",
}


@dataclass(frozen=True)
class EnginePlan:
    """What to start: the engine arguments, and the GPUs (NVML indices) the engine will use."""

    args: AsyncEngineArgs
    devices: list[int]

    @property
    def world_size(self) -> int:
        return int(self.args.tensor_parallel_size) * int(self.args.pipeline_parallel_size)


def engine_arg_names() -> frozenset[str]:
    """The keyword arguments the installed ``AsyncEngineArgs`` accepts."""
    return frozenset(f.name for f in dataclasses.fields(AsyncEngineArgs) if f.init)


def check_engine_args(table: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse names the installed vLLM does not know, and names that have a home elsewhere."""
    known = engine_arg_names()
    for name in table:
        if name in RESERVED:
            raise BadRequest(
                f"engine argument {name!r} is set through {RESERVED[name]}, not in 'engine_args'",
                code="invalid_option",
                param=f"engine_args.{name}",
            )
        if name not in known:
            raise BadRequest(
                f"unknown vLLM engine argument {name!r} in 'engine_args' "
                f"(vLLM {version('vllm')} has no such AsyncEngineArgs field)",
                code="invalid_option",
                param=f"engine_args.{name}",
            )
    return dict(table)


def plan_engine(
    profile: ModelProfile,
    options: VllmOptions,
    *,
    model: str,
    download_dir: str | None,
    uuids: Callable[[Sequence[int]], list[str] | None],
) -> EnginePlan:
    """Map ``profile`` and ``options`` to engine arguments.

    ``model`` is the resolved weights location (a directory or a hub id); ``uuids`` reads GPU
    UUIDs (NVML), returning ``None`` where it cannot, in which case ``device_ids`` are the
    profile's indices as given.

    :raises BadRequest: ``engine_args`` names an unknown or reserved argument, or the profile's
        ``devices`` do not match the parallel sizes.
    """
    extra = check_engine_args(options.engine_args)
    pipeline = options.pipeline_parallel_size
    listed = list(profile.devices or [])
    available = len(listed) if listed else max(1, profile.min_devices)
    tensor = options.tensor_parallel_size or max(1, available // pipeline)
    world = tensor * pipeline
    if listed and not options.multi_host and len(listed) != world:
        raise BadRequest(
            f"model {profile.id!r} lists {len(listed)} devices but tensor_parallel_size "
            f"{tensor} x pipeline_parallel_size {pipeline} needs {world}",
            code="invalid_option",
            param="devices",
        )
    device_ids: list[int | str] | None = None
    if listed and not options.multi_host:
        device_ids = list(uuids(listed) or listed)
    named: dict[str, Any] = {
        "model": model,
        "served_model_name": [profile.id],
        "trust_remote_code": profile.trust_remote_code,
        "max_model_len": profile.context_length,
        "quantization": profile.quant,
        "device_ids": device_ids,
        "tensor_parallel_size": tensor,
        "pipeline_parallel_size": pipeline,
        # A model spanning hosts runs its workers through a Ray cluster this host belongs to.
        "distributed_executor_backend": "ray" if options.multi_host else None,
        "gpu_memory_utilization": options.gpu_memory_utilization,
        "kv_cache_memory_bytes": options.kv_cache_memory_bytes,
        "dtype": options.dtype,
        "enforce_eager": options.enforce_eager,
        "enable_prefix_caching": options.enable_prefix_caching,
        "enable_sleep_mode": options.sleep_mode,
        "reasoning_parser": options.reasoning_parser,
        "download_dir": download_dir,
        # No periodic stats log lines; the harness's own stat logger keeps the statistics flowing.
        "disable_log_stats": True,
    }
    kwargs = {key: value for key, value in named.items() if value is not None}
    args = AsyncEngineArgs(**kwargs, **extra)
    devices = listed if options.multi_host else engine_devices(listed, world)
    return EnginePlan(args=args, devices=devices)
