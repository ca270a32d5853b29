"""Profile and options to vLLM's real ``AsyncEngineArgs``: every documented key, and the refusals."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("vllm", reason="vllm is not installed")

from vllm.engine.arg_utils import AsyncEngineArgs

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.errors import BadRequest
from cortex_vllm.engine_args import RESERVED, EnginePlan, engine_arg_names, plan_engine
from cortex_vllm.options import OPTION_NAMES, read_options


def no_uuids(devices: Sequence[int]) -> list[str] | None:
    return None


def fake_uuids(devices: Sequence[int]) -> list[str] | None:
    return [f"GPU-uuid-{device}" for device in devices]


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A real local directory for ``model``: vLLM resolves anything else as a hub id (with
    ``HF_HUB_OFFLINE=1``, against the hub cache, where it is not). Building the arguments reads
    no file from it."""
    path = tmp_path / "m"
    path.mkdir()
    return path


@pytest.fixture
def plan(model_dir: Path) -> Callable[..., EnginePlan]:
    def build(
        profile_fields: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        *,
        uuids: Callable[[Sequence[int]], list[str] | None] = no_uuids,
        model: str | None = None,
        download_dir: str | None = None,
    ) -> EnginePlan:
        profile = ModelProfile(id="m", harness="vllm", **(profile_fields or {}))
        return plan_engine(
            profile,
            read_options({}, options or {}),
            model=model or str(model_dir),
            download_dir=download_dir,
            uuids=uuids,
        )

    return build


def test_the_defaults_leave_vllm_its_own_defaults(plan: Callable[..., EnginePlan], model_dir: Path) -> None:
    built = plan()
    args = built.args
    assert isinstance(args, AsyncEngineArgs)
    defaults = AsyncEngineArgs(model=str(model_dir))
    assert args.model == str(model_dir)
    assert args.served_model_name == ["m"]
    assert args.tensor_parallel_size == 1
    assert args.pipeline_parallel_size == 1
    assert args.device_ids is None
    assert args.distributed_executor_backend is None
    assert args.max_model_len is None
    assert args.quantization is None
    assert args.gpu_memory_utilization == defaults.gpu_memory_utilization
    assert args.kv_cache_memory_bytes is None
    assert args.dtype == defaults.dtype
    assert args.enforce_eager == defaults.enforce_eager
    assert args.enable_prefix_caching == defaults.enable_prefix_caching
    assert args.enable_sleep_mode is True
    assert args.disable_log_stats is True
    assert args.trust_remote_code is False
    assert built.devices == [0]
    assert built.world_size == 1


# (profile fields, options, AsyncEngineArgs attribute, expected value): one row per documented key.
ROWS: list[tuple[dict[str, Any], dict[str, Any], str, Any]] = [
    ({"context_length": 8192}, {}, "max_model_len", 8192),
    ({"quant": "awq"}, {}, "quantization", "awq"),
    ({"trust_remote_code": True}, {}, "trust_remote_code", True),
    ({}, {"tensor_parallel_size": 2}, "tensor_parallel_size", 2),
    ({}, {"pipeline_parallel_size": 2}, "pipeline_parallel_size", 2),
    ({}, {"multi_host": True}, "distributed_executor_backend", "ray"),
    ({}, {"gpu_memory_utilization": 0.45}, "gpu_memory_utilization", 0.45),
    ({}, {"kv_cache_memory_bytes": 2 << 30}, "kv_cache_memory_bytes", 2 << 30),
    ({}, {"dtype": "bfloat16"}, "dtype", "bfloat16"),
    ({}, {"enforce_eager": True}, "enforce_eager", True),
    ({}, {"enable_prefix_caching": False}, "enable_prefix_caching", False),
    ({}, {"sleep_mode": False}, "enable_sleep_mode", False),
    ({}, {"reasoning_parser": "qwen3"}, "reasoning_parser", "qwen3"),
    ({}, {"engine_args": {"max_num_seqs": 32, "seed": 7}}, "max_num_seqs", 32),
    ({}, {"engine_args": {"max_num_seqs": 32, "seed": 7}}, "seed", 7),
]


@pytest.mark.parametrize(("fields", "options", "attribute", "expected"), ROWS)
def test_each_key_reaches_its_engine_argument(
    plan: Callable[..., EnginePlan],
    fields: dict[str, Any],
    options: dict[str, Any],
    attribute: str,
    expected: Any,
) -> None:
    assert getattr(plan(fields, options).args, attribute) == expected


def test_every_named_option_that_is_an_engine_setting_is_mapped() -> None:
    covered = {key for _, options, _, _ in ROWS for key in options}
    frontend_only = {
        "tool_parser",
        "chat_template",
        "chat_template_kwargs",
        "default_max_tokens",
        "unload_timeout_s",
    }
    assert OPTION_NAMES - covered - frontend_only == {"hub_cache_dir"}  # tested through the harness


def test_devices_become_device_ids_by_uuid_when_nvml_reads_them(plan: Callable[..., EnginePlan]) -> None:
    built = plan({"devices": [2, 3]}, uuids=fake_uuids)
    assert built.args.device_ids == ["GPU-uuid-2", "GPU-uuid-3"]
    assert built.args.tensor_parallel_size == 2
    assert built.devices == [2, 3]


def test_devices_stay_indices_without_nvml(plan: Callable[..., EnginePlan]) -> None:
    built = plan({"devices": [1]})
    assert built.args.device_ids == [1]
    assert built.devices == [1]


def test_devices_split_between_tensor_and_pipeline_parallelism(plan: Callable[..., EnginePlan]) -> None:
    built = plan({"devices": [0, 1, 2, 3]}, {"pipeline_parallel_size": 2})
    assert (built.args.tensor_parallel_size, built.args.pipeline_parallel_size) == (2, 2)
    assert built.world_size == 4


def test_min_devices_sets_the_tensor_parallel_size_when_no_devices_are_listed(
    plan: Callable[..., EnginePlan], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    built = plan({"min_devices": 2})
    assert built.args.tensor_parallel_size == 2
    assert built.devices == [0, 1]


def test_without_devices_the_engine_uses_the_visible_gpus(
    plan: Callable[..., EnginePlan], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert plan({"min_devices": 2}).devices == [3, 1]


def test_devices_that_do_not_match_the_parallel_sizes_are_refused(plan: Callable[..., EnginePlan]) -> None:
    with pytest.raises(BadRequest) as caught:
        plan({"devices": [0, 1, 2]}, {"tensor_parallel_size": 2})
    assert caught.value.param == "devices"
    assert "lists 3 devices" in caught.value.message


def test_a_model_spanning_hosts_runs_on_ray_without_device_ids(plan: Callable[..., EnginePlan]) -> None:
    built = plan(
        {"devices": [0, 1]}, {"multi_host": True, "pipeline_parallel_size": 2, "tensor_parallel_size": 2}
    )
    assert built.args.distributed_executor_backend == "ray"
    assert built.args.device_ids is None
    assert built.world_size == 4
    assert built.devices == [0, 1]  # the local GPUs: locked and measured here


def test_the_hub_cache_reaches_vllm_as_its_download_dir(
    plan: Callable[..., EnginePlan], tmp_path: Path
) -> None:
    # The harness hands vLLM the snapshot it resolved in that cache (see test_hub.py), never a hub id.
    assert plan(download_dir=str(tmp_path)).args.download_dir == str(tmp_path)


def test_an_unknown_engine_argument_is_an_error_that_names_it(plan: Callable[..., EnginePlan]) -> None:
    with pytest.raises(BadRequest) as caught:
        plan(options={"engine_args": {"max_num_seqz": 8}})
    assert caught.value.code == "invalid_option"
    assert caught.value.param == "engine_args.max_num_seqz"
    assert "'max_num_seqz'" in caught.value.message
    assert "vLLM 0." in caught.value.message


@pytest.mark.parametrize("name", sorted(RESERVED))
def test_an_engine_argument_with_a_home_elsewhere_is_refused(
    plan: Callable[..., EnginePlan], name: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        plan(options={"engine_args": {name: None}})
    assert caught.value.param == f"engine_args.{name}"
    assert RESERVED[name] in caught.value.message


def test_reserved_names_are_real_engine_arguments() -> None:
    assert set(RESERVED) <= engine_arg_names()


def test_vllm_builds_a_model_config_from_the_mapped_arguments(
    plan: Callable[..., EnginePlan], tiny_chat_model: Path
) -> None:
    # Sleep mode needs a CUDA platform, which this check does not.
    options = {"dtype": "float32", "sleep_mode": False}
    built = plan({"context_length": 2048, "devices": [0]}, options, model=str(tiny_chat_model))
    model_config = built.args.create_model_config()
    assert model_config.max_model_len == 2048
    assert model_config.served_model_name == "m"
