"""The vLLM plugin on a host without vLLM: it registers, imports nothing heavy, and says what is missing.

These run in every environment; where vLLM is installed, its absence is simulated.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from cortex_kernel.errors import CortexError
from cortex_kernel.harness import HarnessContext
from cortex_kernel.plugins import build_plugin_manager


def test_the_plugin_registers_the_vllm_harness() -> None:
    import cortex_vllm.plugin as plugin

    pm = build_plugin_manager(load_entrypoints=False)
    pm.register(plugin, name="vllm")
    specs = [spec for group in pm.hook.register_harnesses() for spec in group]
    assert [spec.name for spec in specs] == ["vllm"]
    assert "vLLM" in specs[0].description


def test_importing_the_plugin_imports_nothing_from_vllm() -> None:
    code = (
        "import sys, cortex_vllm.plugin; print(sorted(m for m in sys.modules if m.split('.')[0] == 'vllm'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_the_plugins_command_lists_vllm_without_importing_it() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from cortex_kernel.cli import build_cli\n"
        "result = CliRunner().invoke(build_cli(), ['plugins'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'vllm' in result.output, result.output\n"
        "assert 'vllm' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_building_the_harness_without_vllm_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import cortex_vllm.plugin as plugin

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "vllm" else real_find_spec(name, *a),
    )
    with pytest.raises(CortexError) as caught:
        plugin._build(HarnessContext(cache_dir=tmp_path))
    assert caught.value.status == 503
    assert caught.value.code == "harness_unavailable"
    assert "vLLM, which is not installed" in caught.value.message
    assert "pip install 'cortex-kernel[vllm]'" in caught.value.message


@pytest.mark.parametrize("installed", ["0.29.9", "0.34.0", "1.0.0"])
def test_a_vllm_outside_the_supported_range_is_refused(
    monkeypatch: pytest.MonkeyPatch, installed: str
) -> None:
    import cortex_vllm.plugin as plugin

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setattr(plugin, "version", lambda name: installed)
    with pytest.raises(CortexError) as caught:
        plugin.check_vllm()
    assert caught.value.code == "harness_unavailable"
    assert f"vLLM {installed} is installed" in caught.value.message


@pytest.mark.parametrize("installed", ["0.30.0", "0.33.0", "0.33.1+cu128", "0.33.0rc1"])
def test_supported_vllm_versions_pass(monkeypatch: pytest.MonkeyPatch, installed: str) -> None:
    import cortex_vllm.plugin as plugin

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setattr(plugin, "version", lambda name: installed)
    assert plugin.check_vllm() == installed
