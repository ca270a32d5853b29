"""shellcheck passes on every shell script the project ships, RPM scriptlets included."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.rpm.conftest import PACKAGES, REPO_ROOT, rpm_query
from tests.system_tools import tool_or_skip

SKIP_DIRS = {".git", ".venv", ".vllm-env", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache",
             ".pytest_cache", "_build", "build", "dist", ".hypothesis"}  # fmt: skip
SHELL_SHEBANG = re.compile(rb"^#!\s*(/usr)?/bin/(env\s+)?(ba|da|k)?sh\b")


def shell_scripts() -> list[Path]:
    """Files ending in .sh or starting with a sh/bash shebang, outside caches and venvs."""
    found = []
    for directory, subdirs, files in os.walk(REPO_ROOT):
        subdirs[:] = [d for d in subdirs if d not in SKIP_DIRS]
        for name in files:
            path = Path(directory, name)
            if path.is_symlink():
                continue
            with path.open("rb") as handle:
                head = handle.readline(200)
            if name.endswith(".sh") or SHELL_SHEBANG.match(head):
                found.append(path)
    return sorted(found)


@pytest.fixture(scope="module")
def shellcheck() -> str:
    return tool_or_skip("shellcheck", "scripts/install-system-deps installs it")


def test_every_shell_script_passes(shellcheck: str) -> None:
    scripts = shell_scripts()
    names = {str(path.relative_to(REPO_ROOT)) for path in scripts}
    assert {"scripts/install-system-deps", ".ci/run", "rpm/install-venv.sh"} <= names

    done = subprocess.run(
        [shellcheck, "--external-sources", *map(str, scripts)], capture_output=True, text=True
    )

    assert done.returncode == 0, done.stdout + done.stderr


def test_rpm_scriptlets_pass(shellcheck: str, built_rpms: dict[str, Path], tmp_path: Path) -> None:
    for name in PACKAGES:
        scripts = rpm_query(built_rpms[name], "--scripts")
        for number, body in enumerate(
            re.split(r"^\w+ scriptlet \(using /bin/sh\):\n", scripts, flags=re.M)[1:]
        ):
            script = tmp_path / f"{name}-{number}.sh"
            # rpm runs scriptlets with sh and the install count as $1.
            script.write_text("#!/bin/sh\nset -- 1\n" + body)
            # Warnings and errors only: systemd's own scriptlet macros leave "$1" unquoted (rpm
            # always passes a number), which is style, not a bug.
            done = subprocess.run(
                [shellcheck, "-s", "sh", "-S", "warning", str(script)], capture_output=True, text=True
            )
            assert done.returncode == 0, f"{name} scriptlet:\n{body}\n{done.stdout}"
