"""scripts/npm-cli-env (behind scripts/codex-env and scripts/claude-code-env): each pinned client
is installed once per version, outside the clone, even when two first runs race.

``npm`` is replaced on PATH by a stand-in that records its arguments, sleeps a little (so two
concurrent first runs overlap) and lays out ``node_modules/.bin/<binary>`` as npm would.
Everything else (the cache layout, the lock, the stamp) is the script's real work.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

STAND_IN_NPM = """#!/bin/sh
# Stand-in for npm (tests of scripts/npm-cli-env only): install --prefix DIR ... PACKAGE@VERSION
echo "$*" >> "$STAND_IN_LOG"
sleep 1
prefix=$3
mkdir -p "$prefix/node_modules/.bin"
for bin in codex claude; do
  printf '#!/bin/sh\\necho "%s stand-in"\\n' "$bin" > "$prefix/node_modules/.bin/$bin"
  chmod +x "$prefix/node_modules/.bin/$bin"
done
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(STAND_IN_NPM)
    npm.chmod(0o755)
    return os.environ | {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "STAND_IN_LOG": str(tmp_path / "npm.log"),
    }


def installs(env: dict[str, str]) -> list[str]:
    log = Path(env["STAND_IN_LOG"])
    return log.read_text().splitlines() if log.exists() else []


def test_two_first_runs_install_once_and_agree_on_the_binary(env: dict[str, str]) -> None:
    runs = [
        subprocess.Popen([str(REPO_ROOT / "scripts/codex-env")], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    paths = [run.communicate(timeout=60)[0].strip() for run in runs]
    assert [run.returncode for run in runs] == [0, 0]
    expected = Path(env["XDG_CACHE_HOME"]) / "cortex-kernel/codex-0.171.0/node_modules/.bin/codex"
    assert paths == [str(expected)] * 2
    assert len(installs(env)) == 1 and installs(env)[0].endswith("@openai/codex@0.171.0")
    again = subprocess.run([str(REPO_ROOT / "scripts/codex-env")], env=env, capture_output=True, text=True)
    assert again.stdout.strip() == str(expected) and len(installs(env)) == 1  # cached


def test_another_version_or_client_is_its_own_install(env: dict[str, str]) -> None:
    newer = env | {"CORTEX_CODEX_VERSION": "9.9.9"}
    subprocess.run([str(REPO_ROOT / "scripts/codex-env")], env=env, capture_output=True, check=True)
    subprocess.run([str(REPO_ROOT / "scripts/codex-env")], env=newer, capture_output=True, check=True)
    claude = subprocess.run(
        [str(REPO_ROOT / "scripts/claude-code-env")], env=env, capture_output=True, text=True, check=True
    )
    assert claude.stdout.strip().endswith("cortex-kernel/claude-code-2.1.332/node_modules/.bin/claude")
    assert [line.split()[-1] for line in installs(env)] == [
        "@openai/codex@0.171.0",
        "@openai/codex@9.9.9",
        "@anthropic-ai/claude-code@2.1.332",
    ]


def test_without_npm_it_fails_with_a_reason(env: dict[str, str], tmp_path: Path) -> None:
    tools = tmp_path / "no-npm"
    tools.mkdir()
    for tool in ("bash", "dirname"):  # what the scripts need before they look for npm
        (tools / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    bare = env | {"PATH": str(tools)}
    done = subprocess.run(
        ["/bin/bash", str(REPO_ROOT / "scripts/codex-env")], env=bare, capture_output=True, text=True
    )
    assert done.returncode == 1 and done.stdout == "" and "npm is not installed" in done.stderr
