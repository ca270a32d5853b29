"""HostSession's steps one by one, against a ScriptedHost: exact commands, bounded waiting."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cortex_deploy.host import Clock, HostError, HostSession, prefixed
from cortex_deploy.manifest import Repo, SyncFile
from cortex_deploy.transport import CommandResult
from tests.deploy.doubles import Answer, ScriptedHost, reply

DNF4: dict[tuple[str, ...], Answer] = {("dnf", "--version"): reply(0, "4.14.0\n")}


class FakeClock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> Clock:
        return Clock(now=lambda: self.now, sleep=self._sleep)

    def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_prefixed_puts_the_host_on_every_line() -> None:
    assert prefixed("gw1", "Error: one\nError: two") == "[gw1]   Error: one\n[gw1]   Error: two"


def test_health_wait_polls_until_the_daemon_answers() -> None:
    answers = iter([7, 7, 0])
    host = ScriptedHost("n1", answers={("curl",): lambda argv: CommandResult(argv, next(answers))})
    fake = FakeClock()
    session = HostSession(host, echo=lambda line: None, clock=fake.clock())

    assert session.wait_healthy("http://127.0.0.1:13131/health", timeout_s=30)
    assert fake.sleeps == [1.0, 1.0]
    assert host.argvs[0] == (
        "curl", "-fsS", "-o", "/dev/null", "--max-time", "5", "http://127.0.0.1:13131/health",
    )  # fmt: skip


def test_health_wait_is_bounded() -> None:
    host = ScriptedHost("n1", answers={("curl",): reply(7, "", "curl: (7) Failed to connect")})
    fake = FakeClock()
    session = HostSession(host, echo=lambda line: None, clock=fake.clock())

    assert not session.wait_healthy("http://127.0.0.1:13131/health", timeout_s=10)
    assert fake.now <= 10
    assert len(host.argvs) == 11  # at t = 0, 1, ..., 10


def test_unchanged_file_only_gets_owner_and_mode(tmp_path: Path) -> None:
    source = tmp_path / "neuron.toml"
    source.write_text("listen = '0.0.0.0:13131'\n")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    host = ScriptedHost("n1", answers={("sha256sum",): reply(0, f"{digest}  /etc/neuron/neuron.toml\n")})
    wanted = SyncFile(source, "/etc/neuron/neuron.toml", "root", "neuron", 0o640)

    assert HostSession(host, echo=lambda line: None).sync_file(wanted) is False
    assert host.commands == [
        (("sha256sum", "/etc/neuron/neuron.toml"), True),
        (("chown", "root:neuron", "/etc/neuron/neuron.toml"), True),
        (("chmod", "0640", "/etc/neuron/neuron.toml"), True),
    ]
    assert host.copies == []


def test_changed_file_is_staged_and_installed(tmp_path: Path) -> None:
    source = tmp_path / "neuron.toml"
    source.write_text("new\n")
    host = ScriptedHost(
        "n1",
        answers={("sha256sum",): reply(1, "", "No such file"), ("mktemp",): reply(0, "/tmp/tmp.Ab12\n")},
    )
    wanted = SyncFile(source, "/etc/neuron/neuron.toml", "root", "neuron", 0o640)

    assert HostSession(host, echo=lambda line: None).sync_file(wanted) is True
    assert host.copies == [(source, "/tmp/tmp.Ab12")]
    assert host.commands[1:] == [
        (("mktemp",), False),
        (
            (
                "install",
                "-o",
                "root",
                "-g",
                "neuron",
                "-m",
                "0640",
                "/tmp/tmp.Ab12",
                "/etc/neuron/neuron.toml",
            ),
            True,
        ),
        (("rm", "-f", "/tmp/tmp.Ab12"), False),
    ]


def test_failed_install_of_a_file_raises_and_cleans_up(tmp_path: Path) -> None:
    source = tmp_path / "neuron.toml"
    source.write_text("new\n")
    host = ScriptedHost(
        "n1",
        answers={
            ("sha256sum",): reply(1),
            ("mktemp",): reply(0, "/tmp/tmp.Ab12\n"),
            ("install",): reply(1, "", "install: invalid group 'neuron'"),
        },
    )
    wanted = SyncFile(source, "/etc/neuron/neuron.toml", "root", "neuron", 0o640)

    with pytest.raises(
        HostError, match=r"cannot install /etc/neuron/neuron.toml \(root:neuron 0640\)"
    ) as caught:
        HostSession(host, echo=lambda line: None).sync_file(wanted)
    assert caught.value.result is not None
    assert "invalid group" in caught.value.result.stderr
    assert host.argvs[-1] == ("rm", "-f", "/tmp/tmp.Ab12")


def test_repo_problems_only_warn() -> None:
    host = ScriptedHost(
        "gw1",
        answers={
            **DNF4,
            ("test", "-f"): reply(1),
            ("dnf", "config-manager", "--add-repo"): reply(1, "", "Error: Configuration of repo failed"),
        },
    )
    lines: list[str] = []

    HostSession(host, echo=lines.append).ensure_repo(Repo("r", "https://rpm.example.org/r.repo", "r.repo"))

    assert "[gw1] warning: could not add repository r:" in lines
    assert "[gw1]   Error: Configuration of repo failed" in lines
    assert host.argvs[-1] == ("dnf", "config-manager", "--set-enabled", "r")  # still tried
