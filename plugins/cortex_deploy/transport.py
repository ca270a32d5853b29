"""The seam between the rollout and a host: run a command there, copy a file there.

The rollout never builds shell strings and never knows how a host is reached. It hands a
:class:`Transport` an argument vector and reads back a :class:`CommandResult`. Two
transports exist: :class:`~cortex_deploy.ssh.SshTransport` for real hosts and
:class:`~cortex_deploy.local.LocalTransport` for this machine (tests, or a chroot).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class HostPath(str):
    """An absolute path in the target host's own filesystem.

    The rollout marks paths this way (the unit file, the repo file, a config destination) so a
    transport that maps a host onto a directory of this machine, such as
    ``LocalTransport(root=...)``, knows which arguments to rebase. Everywhere else it is a str.
    """

    __slots__ = ()


@dataclass(frozen=True)
class CommandResult:
    """What one command did: its exit status and everything it printed."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        """Whether the command exited with status 0."""
        return self.returncode == 0

    @property
    def output(self) -> str:
        """stdout then stderr, for showing an operator what went wrong."""
        parts = [part.rstrip("\n") for part in (self.stdout, self.stderr) if part.strip()]
        return "\n".join(parts)


class Transport(Protocol):
    """How the rollout reaches one host.

    ``host`` is the name used in messages (``[host] ...``). ``run`` executes an argument
    vector on the host and never raises for a non-zero exit: failures are results, so the
    rollout decides what each one means. ``privileged`` marks commands that need root there
    (a transport may prefix them with sudo). ``copy`` puts a local file at a path the login
    user may write, such as a file made by ``mktemp``.
    """

    host: str

    def run(
        self, argv: Sequence[str], *, privileged: bool = False, timeout_s: float | None = None
    ) -> CommandResult: ...

    def copy(self, source: Path, destination: str) -> CommandResult: ...
