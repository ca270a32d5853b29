"""The pinned coding-agent CLIs (Claude Code, Codex) the client tests drive against a gateway.

Each is pinned and installed by a script under ``scripts/`` that prints the binary's path;
``make unit`` runs it once and exports the path, so tests skip the install when given one.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def pinned_cli(env_var: str, script: str, name: str) -> str:
    """``$env_var`` when it names an executable, else what ``scripts/<script>`` installs and prints.

    Skips the calling test, with the reason, when neither yields one (no npm, no network on the
    first install)."""
    given = os.environ.get(env_var)
    if given and os.access(given, os.X_OK):
        return given
    done = subprocess.run(
        [str(REPO_ROOT / "scripts" / script)], capture_output=True, text=True, timeout=600, check=False
    )
    path = done.stdout.strip()
    if done.returncode != 0 or not path or not os.access(path, os.X_OK):
        pytest.skip(f"the {name} CLI is not available (scripts/{script}): {done.stderr.strip()[-300:]}")
    return path
