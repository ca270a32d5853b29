"""The harness options are checked before vLLM is involved (these run without vLLM)."""

from __future__ import annotations

from typing import Any

import pytest

from cortex_kernel.errors import BadRequest
from cortex_vllm.options import OPTION_NAMES, VllmOptions, read_options


def test_no_options_are_the_defaults() -> None:
    assert read_options({}, {}) == VllmOptions()
    assert VllmOptions().sleep_mode is True
    assert VllmOptions().pipeline_parallel_size == 1


def test_profile_options_win_and_tables_merge_key_by_key() -> None:
    harness = {
        "gpu_memory_utilization": 0.5,
        "enforce_eager": True,
        "engine_args": {"max_num_seqs": 64, "seed": 1},
        "chat_template_kwargs": {"enable_thinking": False, "a": 1},
    }
    profile = {
        "gpu_memory_utilization": 0.25,
        "engine_args": {"seed": 7},
        "chat_template_kwargs": {"enable_thinking": True},
    }
    options = read_options(harness, profile)
    assert options.gpu_memory_utilization == 0.25
    assert options.enforce_eager is True
    assert options.engine_args == {"max_num_seqs": 64, "seed": 7}
    assert options.chat_template_kwargs == {"enable_thinking": True, "a": 1}


def test_an_unknown_option_is_an_error_that_names_it_and_points_at_engine_args() -> None:
    with pytest.raises(BadRequest) as caught:
        read_options({}, {"max_num_seqs": 8})
    assert caught.value.code == "invalid_option"
    assert caught.value.param == "max_num_seqs"
    assert "'max_num_seqs'" in caught.value.message
    assert "engine_args" in caught.value.message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("tensor_parallel_size", 0),
        ("tensor_parallel_size", True),
        ("pipeline_parallel_size", "2"),
        ("gpu_memory_utilization", 1.5),
        ("gpu_memory_utilization", 0),
        ("kv_cache_memory_bytes", -1),
        ("multi_host", "yes"),
        ("sleep_mode", 1),
        ("tool_parser", ""),
        ("engine_args", ["seed"]),
        ("chat_template_kwargs", "enable_thinking"),
        ("unload_timeout_s", 0),
    ],
)
def test_a_value_of_the_wrong_kind_is_an_error_that_names_the_key(key: str, value: Any) -> None:
    with pytest.raises(BadRequest) as caught:
        read_options({}, {key: value})
    assert caught.value.param == key
    assert repr(key) in caught.value.message


def test_every_option_has_a_default() -> None:
    assert set(VllmOptions.__struct_fields__) == OPTION_NAMES
