"""dnf4 and dnf5 command lines, and telling the two apart.

dnf5 cannot run here (Debian ships dnf4), so its side is a check of the exact command lines,
both alone and in a whole rollout against a ScriptedHost double.
"""

from __future__ import annotations

import pytest

from cortex_deploy.dnf import DNF4, DNF5, detect_dialect
from cortex_deploy.host import HostSession
from cortex_deploy.manifest import Repo, Target
from cortex_deploy.rollout import Result, roll_target
from cortex_deploy.transport import CommandResult
from tests.deploy.doubles import ScriptedHost, reply

DNF5_VERSION = "dnf5 version 5.2.8.1\ndnf5 plugin API version 2.0\nlibdnf5 version 5.2.8.1\n"
DNF4_VERSION = "4.14.0\n  Installed: dnf-0:4.14.0-1.fc38.noarch at Mon 01 Jan 2024\n"
REPO = Repo("cortex-unstable", "https://rpm.example.org/cortex-unstable.repo", "cortex-unstable.repo")
TARGET = Target(
    host="gw1",
    role="gateway",
    package="cortex-kernel",
    unit="cortex-kernel.service",
    health_url="http://127.0.0.1:31313/health",
    health_timeout_s=1.0,
)


@pytest.mark.parametrize(
    ("output", "major"),
    [
        (DNF5_VERSION, 5),
        ("5.2.8.1\n", 5),
        (DNF4_VERSION, 4),
        ("\n4.21.1\n", 4),
        ("yum version 3.4.3\n", None),
        ("", None),
    ],
)
def test_detect_dialect(output: str, major: int | None) -> None:
    dialect = detect_dialect(output)
    assert (dialect.major if dialect else None) == major


def test_dnf4_command_lines() -> None:
    assert DNF4.add_repo("https://r/x.repo") == ["dnf", "config-manager", "--add-repo", "https://r/x.repo"]
    assert DNF4.enable_repo("x") == ["dnf", "config-manager", "--set-enabled", "x"]
    assert DNF4.check_update("p") == ["dnf", "check-update", "--refresh", "-q", "p"]
    assert DNF4.install("p") == ["dnf", "install", "-y", "--refresh", "--allowerasing", "p"]
    assert DNF4.upgrade("p") == ["dnf", "upgrade", "-y", "--refresh", "p"]


def test_dnf5_command_lines() -> None:
    assert DNF5.add_repo("https://r/x.repo") == [
        "dnf",
        "config-manager",
        "addrepo",
        "--from-repofile=https://r/x.repo",
    ]
    assert DNF5.enable_repo("x") == ["dnf", "config-manager", "setopt", "x.enabled=1"]
    assert DNF5.check_update("p") == ["dnf", "check-update", "--refresh", "-q", "p"]
    assert DNF5.install("p") == ["dnf", "install", "-y", "--refresh", "--allowerasing", "p"]
    # dnf5's install leaves an installed package alone: a stale one needs upgrade.
    assert DNF5.upgrade("p") == ["dnf", "upgrade", "-y", "--refresh", "p"]


def dnf5_host(*, installed: str | None, check_update: int = 0) -> ScriptedHost:
    """A dnf5 host as a ScriptedHost: what dnf5, rpm and the rest would print.

    rpm answers from a little state that a successful dnf install or upgrade moves to 0.1.0-1.
    """
    state = {"version": installed}

    def rpm(argv: tuple[str, ...]) -> CommandResult:
        if state["version"]:
            return CommandResult(argv, 0, state["version"])
        return CommandResult(argv, 1, "package cortex-kernel is not installed\n")

    def dnf_transaction(argv: tuple[str, ...]) -> CommandResult:
        state["version"] = "0.1.0-1"
        return CommandResult(argv, 0, "Complete!\n")

    return ScriptedHost(
        "gw1",
        answers={
            ("dnf", "--version"): reply(0, DNF5_VERSION),
            ("test", "-f", "/etc/yum.repos.d/cortex-unstable.repo"): reply(1),
            ("test", "-f", "/usr/lib/systemd/system/cortex-kernel.service"): reply(0 if installed else 1),
            ("rpm", "-q"): rpm,
            ("dnf", "check-update"): reply(check_update),
            ("dnf", "install"): dnf_transaction,
            ("dnf", "upgrade"): dnf_transaction,
            ("systemctl", "is-active"): reply(0 if installed else 3),
        },
    )


def dnf_commands(host: ScriptedHost) -> list[tuple[tuple[str, ...], bool]]:
    return [(argv, privileged) for argv, privileged in host.commands if argv[0] == "dnf"]


def test_dnf5_fresh_install_speaks_dnf5() -> None:
    host = dnf5_host(installed=None)

    outcome = roll_target(HostSession(host, echo=lambda line: None), TARGET, REPO)

    assert outcome.result is Result.INSTALLED
    assert dnf_commands(host) == [
        (("dnf", "--version"), False),
        (("dnf", "config-manager", "addrepo", f"--from-repofile={REPO.url}"), True),
        (("dnf", "config-manager", "setopt", "cortex-unstable.enabled=1"), True),
        (("dnf", "install", "-y", "--refresh", "--allowerasing", "cortex-kernel"), True),
    ]


def test_dnf5_stale_package_is_upgraded_not_installed() -> None:
    host = dnf5_host(installed="0.1.0~a1-1", check_update=100)

    outcome = roll_target(HostSession(host, echo=lambda line: None), TARGET, REPO)

    assert (outcome.result, outcome.before, outcome.after) == (Result.UPGRADED, "0.1.0~a1-1", "0.1.0-1")
    commands = [argv for argv, _ in dnf_commands(host)]
    assert ("dnf", "check-update", "--refresh", "-q", "cortex-kernel") in commands
    assert ("dnf", "upgrade", "-y", "--refresh", "cortex-kernel") in commands
    assert not [argv for argv in commands if argv[1] == "install"]
    assert ("systemctl", "stop", "cortex-kernel.service") in host.argvs


def test_unknown_package_manager_fails_the_host() -> None:
    host = ScriptedHost("gw1", answers={("dnf", "--version"): reply(127, "", "bash: dnf: command not found")})
    lines: list[str] = []

    outcome = roll_target(HostSession(host, echo=lines.append), TARGET, REPO)

    assert outcome.result is Result.FAILED
    assert "[gw1]   bash: dnf: command not found" in lines
    assert host.argvs == [("dnf", "--version")]
