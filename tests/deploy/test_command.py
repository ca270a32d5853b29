"""``cortex-kernel deploy`` end to end: dry run, manifest errors, unreachable hosts, the table.

ssh is replaced on PATH by a stand-in that logs its arguments; it either fails like an
unreachable host or is never called at all (the dry run).
"""

from __future__ import annotations

import stat
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from click.testing import Result as CliResult

from cortex_deploy.report import render_table
from cortex_deploy.rollout import Outcome, Result
from cortex_kernel.cli import build_cli

REPO_ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE_SSH = f"""#!{sys.executable}
import os, sys
with open(os.environ["FAKE_SSH_LOG"], "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
sys.stderr.write("ssh: connect to host " + sys.argv[-2] + " port 22: Connection refused\\n")
sys.exit(255)
"""


@pytest.fixture
def ssh_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("ssh", "scp"):
        script = bin_dir / name
        script.write_text(UNREACHABLE_SSH)
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "ssh.log"
    monkeypatch.setenv("FAKE_SSH_LOG", str(log))
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    return log


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    (tmp_path / "cortex.toml").write_text("[gateway]\n")
    path = tmp_path / "fleet.toml"
    path.write_text(
        textwrap.dedent(
            """\
            [repo]
            id = "cortex-unstable"
            url = "https://rpm.example.org/cortex-unstable.repo"

            [ssh]
            user = "deploy"

            [[gateways]]
            host = "gw.example.org"
            [[gateways.files]]
            source = "cortex.toml"
            destination = "/etc/cortex/cortex.toml"
            group = "cortex"
            mode = "0640"

            [[neurons]]
            host = "gpu-a.example.org"
            flavour = "vllm"

            [[neurons]]
            host = "cpu-b.example.org"
            flavour = "cpu"
            """
        )
    )
    return path


def invoke(*args: object) -> CliResult:
    return CliRunner().invoke(build_cli(), ["deploy", *map(str, args)], catch_exceptions=False)


def test_dry_run_prints_the_plan_and_contacts_nobody(manifest: Path, ssh_log: Path) -> None:
    result = invoke("--manifest", manifest, "--dry-run")

    assert result.exit_code == 0, result.output
    assert not ssh_log.exists()
    out = result.output
    assert "nothing is contacted or changed" in out
    assert "hosts are reached as deploy@HOST over ssh, privileged commands through sudo -n" in out
    assert "1. [gw.example.org] gateway: cortex-kernel (cortex-kernel.service)" in out
    assert "2. [gpu-a.example.org] neuron: cortex-neuron-vllm (cortex-neuron.service)" in out
    assert "3. [cpu-b.example.org] neuron: cortex-neuron-cpu (cortex-neuron.service)" in out
    assert "-> /etc/cortex/cortex.toml (root:cortex 0640)" in out
    assert "wait up to 300 s for http://127.0.0.1:13131/health" in out


def test_unreachable_host_fails_halts_and_exits_1(manifest: Path, ssh_log: Path) -> None:
    result = invoke("--manifest", manifest)

    assert result.exit_code == 1
    out = result.output
    assert "[gw.example.org] cannot tell which dnf this host has (dnf --version):" in out
    assert "[gw.example.org]   ssh: connect to host deploy@gw.example.org port 22: Connection refused" in out
    assert "[gw.example.org] halting the rollout" in out
    table = out[out.index("HOST") :]
    assert "gw.example.org     gateway  cortex-kernel" in table
    assert "failed (cannot tell which dnf this host has (dnf --version))" in table
    assert table.count("skipped (an earlier host failed)") == 2
    assert "1 failed, 2 skipped" in out
    called = ssh_log.read_text().splitlines()
    assert len(called) == 1 and called[0].endswith("-- deploy@gw.example.org dnf --version")


def test_keep_going_tries_every_host(manifest: Path, ssh_log: Path) -> None:
    result = invoke("--manifest", manifest, "--keep-going")

    assert result.exit_code == 1
    assert "3 failed" in result.output
    assert len(ssh_log.read_text().splitlines()) == 3


def test_manifest_errors_exit_2_with_the_key(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text('[repo]\nid = "r"\nurl = "https://x/r.repo"\n[[gateways]]\nhots = "gw"\n')

    result = CliRunner().invoke(build_cli(), ["deploy", "--manifest", str(path)])

    assert result.exit_code == 2
    assert f"error: {path}:5: gateways[0].hots: unknown key" in result.output


def test_example_manifest_dry_runs() -> None:
    example = REPO_ROOT / "fleet.example.toml"
    needed = ["cortex.example.toml", "neuron.example.toml", "models.example.toml"]
    if not all((REPO_ROOT / name).is_file() for name in needed):
        pytest.skip("the example configs that fleet.example.toml syncs are not in this checkout")

    result = invoke("--manifest", example, "--dry-run")

    assert result.exit_code == 0, result.output
    assert "[gpu-a.example.org] neuron: cortex-neuron-vllm" in result.output


def test_table_shows_versions_before_and_after() -> None:
    table = render_table(
        [
            Outcome("gw", "gateway", "cortex-kernel", "(not installed)", "0.1.0-1", Result.INSTALLED),
            Outcome("n1", "neuron", "cortex-neuron-cpu", "0.1.0~a1-1", "0.1.0-1", Result.UPGRADED),
            Outcome("n2", "neuron", "cortex-neuron-cpu", detail="an earlier host failed"),
        ]
    ).splitlines()

    assert table[0].split() == ["HOST", "ROLE", "PACKAGE", "VERSION", "RESULT"]
    assert table[1].split() == [
        "gw",
        "gateway",
        "cortex-kernel",
        "(not",
        "installed)",
        "→",
        "0.1.0-1",
        "installed",
    ]
    assert "0.1.0~a1-1 → 0.1.0-1" in table[2] and table[2].endswith("upgraded")
    assert table[3].endswith("skipped (an earlier host failed)")
