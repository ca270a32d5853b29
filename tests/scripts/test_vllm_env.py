"""scripts/vllm-env: one shared environment per vLLM version, built once, and each clone's own code.

The heavy step (pip installing vLLM and the dependencies) is replaced by a stand-in executable
through ``CORTEX_VLLM_ENV_TEST_INSTALL``, which the script offers for exactly this: the stand-in
records what it was asked to install and sleeps a little, so two concurrent first runs overlap.
Everything else (the venvs, the lock, the per-clone layer, the generated entry points) is the
script's real work.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

STAND_IN = """#!/bin/sh
# Stand-in for pip in the shared environment (tests of the script's locking only).
echo "$*" >> "$STAND_IN_LOG"
sleep 1
"""

PROBE = """
import importlib.metadata as metadata
import cortex_kernel
print(cortex_kernel.__file__)
print(sorted(entry.name for entry in metadata.entry_points(group="cortex_kernel")))
print(sorted(entry.value for entry in metadata.entry_points(group="pytest11")))
"""


def make_clone(path: Path) -> Path:
    """A clone as far as the script is concerned: the script, pyproject.toml and the sources."""
    (path / "scripts").mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "scripts/vllm-env", path / "scripts/vllm-env")
    shutil.copy2(REPO_ROOT / "pyproject.toml", path / "pyproject.toml")
    (path / "cortex_kernel").mkdir()
    (path / "cortex_kernel/__init__.py").write_text("")
    (path / "plugins").mkdir()
    (path / "harnesses").mkdir()
    return path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    stand_in = tmp_path / "stand-in-pip"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    variables = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return variables | {
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "PYTHON": sys.executable,
        "CORTEX_VLLM_VERSION": "0.0.0-test",
        "CORTEX_VLLM_ENV_TEST_INSTALL": str(stand_in),
        "STAND_IN_LOG": str(tmp_path / "installs.log"),
    }


def probe(python: str, env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [python, "-c", PROBE], env=env, cwd="/", capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.splitlines()


def test_two_concurrent_first_runs_build_one_environment_and_each_clone_imports_its_own_code(
    tmp_path: Path, env: dict[str, str]
) -> None:
    clones = [make_clone(tmp_path / name) for name in ("one", "two")]

    runs = [
        subprocess.Popen(
            [str(clone / "scripts/vllm-env")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for clone in clones
    ]
    outputs = [run.communicate(timeout=120) for run in runs]

    assert [run.returncode for run in runs] == [0, 0], outputs
    logs = "".join(stderr for _, stderr in outputs)
    assert logs.count("vllm-env: creating ") == 1
    installs = Path(env["STAND_IN_LOG"]).read_text().splitlines()
    assert [line for line in installs if line.startswith("vllm==")] == ["vllm==0.0.0-test"]
    assert len(installs) == 2  # vLLM, then the dependencies with the test tools: once
    pythons = [stdout.strip() for stdout, _ in outputs]
    assert pythons == [str(clone / ".vllm-env/bin/python") for clone in clones]
    for clone, python in zip(clones, pythons, strict=True):
        path, plugins, pytest_plugins = probe(python, env)
        assert path == str(clone / "cortex_kernel/__init__.py")
        assert "vllm" in plugins and "neuron" in plugins
        assert pytest_plugins == "['cortex_kernel.testing.pytest_plugin']"
    # A later run finds the stamp: no install, no new layer.
    again = subprocess.run(
        [str(clones[0] / "scripts/vllm-env")], env=env, capture_output=True, text=True, check=True
    )
    assert again.stdout.strip() == pythons[0]
    assert again.stderr == ""
    assert len(Path(env["STAND_IN_LOG"]).read_text().splitlines()) == 2


def test_a_copied_clone_gets_its_own_layer(tmp_path: Path, env: dict[str, str]) -> None:
    original = make_clone(tmp_path / "original")
    subprocess.run([str(original / "scripts/vllm-env")], env=env, capture_output=True, check=True)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy, symlinks=True)

    python = subprocess.run(
        [str(copy / "scripts/vllm-env")], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()

    assert probe(python, env)[0] == str(copy / "cortex_kernel/__init__.py")
    mine = probe(str(original / ".vllm-env/bin/python"), env)[0]
    assert mine == str(original / "cortex_kernel/__init__.py")
