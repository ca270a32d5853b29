"""Fixtures for packaging tests: the three RPMs, built once per session, and unpacked.

They are the light variant (``--without vendor``: cortex-kernel's own wheel, none of its
dependencies), which builds offline in seconds and exercises everything but the wheelhouse:
spec logic, venv relocation, units, sysusers, firewalld services and config permissions.
"""

from __future__ import annotations

import importlib.util
import io
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
RPM_DIR = REPO_ROOT / "rpm"
PACKAGES = ("cortex-kernel", "cortex-neuron-cpu", "cortex-neuron-vllm")


def base_python() -> str:
    """The interpreter the packaged venvs are made from: this test run's, outside its venv."""
    return getattr(sys, "_base_executable", sys.executable)


@pytest.fixture(scope="session")
def rpm_build_tools() -> None:
    """Skip unless rpmbuild can run here and the wheel can be built offline."""
    missing = [tool for tool in ("rpmbuild", "rpm", "rpm2archive") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (scripts/install-system-deps installs them)")
    if importlib.util.find_spec("hatchling") is None:
        pytest.skip("needs hatchling (the test extra) to build the cortex-kernel wheel offline")


@pytest.fixture(scope="session")
def built_rpms(rpm_build_tools: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{package name: rpm file}``, built by rpm/build_rpms.py exactly as docs/packaging.md says."""
    work = tmp_path_factory.mktemp("rpmbuild")
    done = subprocess.run(
        [
            sys.executable, str(RPM_DIR / "build_rpms.py"), "--without-vendor",
            "--workdir", str(work), "--outdir", str(work / "RPMS"), "--python", base_python(),
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    paths = [Path(line) for line in done.stdout.split()]
    built = {name: path for path in paths for name in PACKAGES if path.name.startswith(f"{name}-0")}
    assert sorted(built) == sorted(PACKAGES), done.stdout
    return built


@pytest.fixture(scope="session")
def unpacked(built_rpms: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each package's payload unpacked into its own directory (rpm2archive, no cpio needed)."""
    trees: dict[str, Path] = {}
    for name, rpm in built_rpms.items():
        tree = tmp_path_factory.mktemp(f"unpacked-{name}")
        with rpm.open("rb") as payload:
            archive = subprocess.run(["rpm2archive", "-"], stdin=payload, capture_output=True, check=True)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout), mode="r:gz") as tar:
            # "tar" keeps the venv's absolute interpreter links, which the "data" filter refuses.
            if hasattr(tarfile, "tar_filter"):
                tar.extractall(tree, filter="tar")
            else:
                tar.extractall(tree)
        trees[name] = tree
    return trees


def rpm_query(rpm: Path, *args: str) -> str:
    """``rpm -qp ARGS RPM``'s output."""
    return subprocess.run(["rpm", "-qp", *args, str(rpm)], capture_output=True, text=True, check=True).stdout


def build_driver() -> ModuleType:
    """rpm/build_rpms.py as a module (it is a script, not part of any package)."""
    name = "cortex_rpm_build_driver"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, RPM_DIR / "build_rpms.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


def vercmp(*pairs: str) -> int | list[int]:
    """rpm's own version comparison: one pair gives -1, 0 or 1; several pairs give a list."""
    assert len(pairs) % 2 == 0 and all(re.fullmatch(r"[0-9A-Za-z.~^+_]+", v) for v in pairs)
    calls = ", ".join(f'rpm.vercmp("{a}", "{b}")' for a, b in zip(pairs[::2], pairs[1::2], strict=True))
    lua = f'%{{lua: print(table.concat({{{calls}}}, " "))}}'
    out = subprocess.run(["rpm", "--eval", lua], capture_output=True, text=True, check=True)
    results = [int(value) for value in out.stdout.split()]
    return results[0] if len(results) == 1 else results
