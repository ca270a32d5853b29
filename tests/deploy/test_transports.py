"""SshTransport's exact command lines (and their quoting, end to end through a stand-in ssh),
and LocalTransport's mapping of a host onto a root directory."""

from __future__ import annotations

import json
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from cortex_deploy.local import LocalTransport
from cortex_deploy.ssh import BASE_OPTIONS, SshTransport
from cortex_deploy.transport import CommandResult, HostPath

# A stand-in for ssh: log the argv, then run the remote command line with sh here, which is
# what sshd does on the far side. It proves arguments survive the quoting.
FAKE_SSH = f"""#!{sys.executable}
import json, os, subprocess, sys
with open(os.environ["FAKE_SSH_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
sys.exit(subprocess.run(["sh", "-c", sys.argv[-1]]).returncode)
"""


def test_ssh_argv_plain_and_privileged() -> None:
    ssh = SshTransport("gpu1.example.org", user="deploy", port=2222, options=("-o", "ProxyJump=bastion"))

    assert ssh.ssh_argv(["rpm", "-q", "cortex-kernel"]) == [
        "ssh", *BASE_OPTIONS, "-o", "ProxyJump=bastion", "-p", "2222", "--",
        "deploy@gpu1.example.org", "rpm -q cortex-kernel",
    ]  # fmt: skip
    assert ssh.ssh_argv(["dnf", "install", "-y", "x"], privileged=True)[-1] == "sudo -n -- dnf install -y x"
    assert ssh.scp_argv(Path("/tmp/a b"), "/tmp/tmp.x") == [
        "scp", "-q", *BASE_OPTIONS, "-o", "ProxyJump=bastion", "-P", "2222", "--",
        "/tmp/a b", "deploy@gpu1.example.org:/tmp/tmp.x",
    ]  # fmt: skip


def test_ssh_without_sudo_and_with_connection_sharing(tmp_path: Path) -> None:
    ssh = SshTransport("::1", sudo=False, control_dir=tmp_path)

    argv = ssh.ssh_argv(["systemctl", "start", "x"], privileged=True)

    assert argv[-1] == "systemctl start x"
    assert f"ControlPath={tmp_path}/%C" in argv
    assert ssh.scp_argv(Path("f"), "/tmp/f")[-1] == "[::1]:/tmp/f"


@pytest.fixture
def fake_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    script = tmp_path / "ssh"
    script.write_text(FAKE_SSH)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "ssh.log"
    monkeypatch.setenv("FAKE_SSH_LOG", str(log))
    return script, log


def test_arguments_survive_the_remote_shell(fake_ssh: tuple[Path, Path]) -> None:
    script, _ = fake_ssh
    ssh = SshTransport("host1", sudo=False, ssh=str(script))
    tricky = ["a b", "it's", "$HOME", "; rm -rf /", "%{version}-%{release}"]

    result = ssh.run(["printf", "%s|", *tricky])

    assert result.ok
    assert result.stdout == "|".join(tricky) + "|"


def test_remote_exit_status_and_output_come_back(fake_ssh: tuple[Path, Path]) -> None:
    script, log = fake_ssh
    ssh = SshTransport("host1", sudo=False, ssh=str(script))

    result = ssh.run(["sh", "-c", "echo out; echo err >&2; exit 100"])

    assert (result.returncode, result.stdout, result.stderr) == (100, "out\n", "err\n")
    assert result.argv == ("sh", "-c", "echo out; echo err >&2; exit 100")
    logged = json.loads(log.read_text().splitlines()[0])
    assert logged[-2:] == ["host1", "sh -c 'echo out; echo err >&2; exit 100'"]


def test_missing_ssh_is_a_failed_command_not_an_exception(tmp_path: Path) -> None:
    ssh = SshTransport("host1", ssh=str(tmp_path / "no-ssh"))

    result = ssh.run(["true"])

    assert result.returncode == 255 and "cannot run" in result.stderr


def test_local_rebases_host_paths_rpm_and_dnf(tmp_path: Path) -> None:
    local = LocalTransport("h", root=tmp_path, releasever="9", dnf_options=("--disableplugin=local",))

    assert local.rebase(["test", "-f", HostPath("/etc/x.repo"), "/etc/untouched"]) == [
        "test", "-f", f"{tmp_path}/etc/x.repo", "/etc/untouched",
    ]  # fmt: skip
    assert local.rebase(["rpm", "-q", "p"]) == ["rpm", "--root", str(tmp_path), "-q", "p"]
    assert local.rebase(["dnf", "install", "p"]) == [
        "dnf", f"--installroot={tmp_path}", "--releasever=9", "--disableplugin=local", "install", "p",
    ]  # fmt: skip


def test_local_without_root_runs_as_is(tmp_path: Path) -> None:
    local = LocalTransport()
    (tmp_path / "f").write_text("x")

    assert local.run(["test", "-f", HostPath(str(tmp_path / "f"))]).ok
    assert local.run(["false"]).returncode == 1
    assert local.run(["/nonexistent/program"]).returncode == 127


def test_local_programs_replace_what_cannot_run_here(tmp_path: Path) -> None:
    seen: list[tuple[str, ...]] = []

    def systemctl(argv: Sequence[str]) -> CommandResult:
        seen.append(tuple(argv))
        return CommandResult(tuple(argv), 0)

    local = LocalTransport(root=tmp_path, programs={"systemctl": systemctl})

    assert local.run(["systemctl", "start", "x.service"]).ok
    assert seen == [("systemctl", "start", "x.service")]


def test_local_copy_rebases_host_paths_only(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    source = tmp_path / "src"
    source.write_text("content")
    local = LocalTransport(root=root)

    assert local.copy(source, HostPath("/etc/dest")).ok
    assert (root / "etc/dest").read_text() == "content"
    assert local.copy(source, str(tmp_path / "staged")).ok
    assert (tmp_path / "staged").read_text() == "content"
    assert not local.copy(source, HostPath("/missing/dir/file")).ok
