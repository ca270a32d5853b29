"""A misspelt or mistyped harness option fails ``config check`` with file, line and key.

Each harness declares its options as a Struct (``HarnessSpec.options``); the check runs against
the installed harness plugins, so both built-in harnesses are covered here. The vLLM harness's
options module imports nothing from vLLM, so this runs without it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from cortex_kernel.config.loader import load_config
from cortex_kernel.errors import BadRequest
from cortex_transformers.options import check_options
from cortex_transformers.plugin import register_harnesses as transformers_harnesses
from cortex_vllm.options import VllmOptions
from cortex_vllm.plugin import register_harnesses as vllm_harnesses
from tests.kernel.cli_errors import cli_error, write_config


@pytest.mark.parametrize(
    ("harness", "good", "typo"), [("transformers", "dtype", "dtyp"), ("vllm", "dtype", "dtpye")]
)
def test_a_misspelt_model_option_names_file_line_and_key(
    run_cli: Callable[..., Result], tmp_path: Path, harness: str, good: str, typo: str
) -> None:
    path = write_config(
        tmp_path / "models.toml",
        f"""
        [[models]]
        id = "first"
        harness = "{harness}"

        [[models]]
        id = "second"
        harness = "{harness}"
        [models.options]
        {good} = "float16"
        {typo} = "float16"
        """,
    )
    line = cli_error(run_cli, "config", "check", str(path))
    assert f"{path}:10: models[1].options.{typo}: unknown {harness} option" in line, line
    assert good in line  # the expected form lists the known options


def test_a_mistyped_option_in_an_inline_table_is_located_too(
    run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    path = write_config(
        tmp_path / "models.toml",
        """
        [[models]]
        id = "m"
        harness = "vllm"
        options = { tensor_parallel_size = 0 }
        """,
    )
    line = cli_error(run_cli, "config", "check", str(path))
    assert f"{path}:4: models[0].options.tensor_parallel_size:" in line and ">= 1" in line, line


def test_the_neurons_harness_table_is_checked_as_well(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    path = write_config(tmp_path / "neuron.toml", "[harnesses.transformers]\nmax_concurency = 2\n")
    line = cli_error(run_cli, "config", "check", str(path))
    assert f"{path}:2: harnesses.transformers.max_concurency: unknown transformers option" in line, line


def test_valid_options_pass(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "models.toml",
        """
        [[models]]
        id = "t"
        harness = "transformers"
        options = { dtype = "float32", reasoning = "off", chat_template_kwargs = { enable_thinking = true } }

        [[models]]
        id = "v"
        harness = "vllm"
        options = { gpu_memory_utilization = 0.5, engine_args = { max_num_seqs = 8 } }
        """,
    )
    result = run_cli("config", "check", str(path))
    assert result.exit_code == 0, result.output
    assert load_config("models", path, environ={}).catalogue.models[0].options["dtype"] == "float32"


def test_both_harnesses_declare_their_options_struct() -> None:
    [transformers] = transformers_harnesses()
    [vllm] = vllm_harnesses()
    assert vllm.options is VllmOptions and transformers.options is not None
    for spec in (transformers, vllm):
        assert spec.options is not None and spec.options.__struct_config__.forbid_unknown_fields


def test_the_transformers_harness_refuses_a_misspelt_option_at_load() -> None:
    with pytest.raises(BadRequest) as caught:
        check_options({"max_concurrency": 2}, {"atn_implementation": "sdpa"})
    assert caught.value.code == "invalid_option" and caught.value.param == "atn_implementation"
    check_options({"max_concurrency": 2}, {"attn_implementation": "sdpa"})  # the right spelling loads
