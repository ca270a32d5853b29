"""The public plugin API: every name in ``cortex_kernel.__all__`` resolves, and a sample
third-party plugin type-checks against the package with ``mypy --strict``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cortex_kernel

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = Path(__file__).with_name("sample_plugin.py")


def test_every_public_name_resolves_and_the_package_is_typed() -> None:
    for name in cortex_kernel.__all__:
        assert getattr(cortex_kernel, name) is not None, name
    assert (Path(cortex_kernel.__file__).parent / "py.typed").is_file()


def test_the_sample_plugin_type_checks_strictly(tmp_path: Path) -> None:
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\nwarn_unreachable = True\n")
    package_root = Path(cortex_kernel.__file__).resolve().parents[1]
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(config),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            str(SAMPLE),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(package_root)},
        timeout=600,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
