"""Reach a host with the ``ssh`` and ``scp`` programs of this machine.

Plain subprocesses, not a Python SSH library: the operator's ``~/.ssh/config``, agent, jump
hosts and known_hosts apply exactly as they do on the command line. Every command travels as
one shell-quoted string (``shlex.join``), because ssh hands the remote side a single command
line anyway; quoting here means arguments arrive as they were given.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cortex_deploy.transport import CommandResult

# Never prompt (a rollout runs unattended), and fail fast on a host that is down.
BASE_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=15")
# Exit status ssh itself uses for connection failures (the remote command's is passed through).
SSH_FAILURE = 255


@dataclass
class SshTransport:
    """Run commands on ``host`` over ssh, with ``sudo -n`` for privileged ones when asked.

    ``control_dir`` enables connection sharing (one TCP and auth handshake per host for the
    dozens of commands a rollout runs); the caller owns and removes the directory.
    """

    host: str
    user: str | None = None
    port: int | None = None
    sudo: bool = True
    options: tuple[str, ...] = ()
    control_dir: Path | None = None
    ssh: str = "ssh"
    scp: str = "scp"
    _shared: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        shared = list(BASE_OPTIONS)
        if self.control_dir is not None:
            shared += [
                "-o", "ControlMaster=auto",
                "-o", f"ControlPath={self.control_dir}/%C",
                "-o", "ControlPersist=30",
            ]  # fmt: skip
        self._shared = (*shared, *self.options)

    @property
    def destination(self) -> str:
        """``user@host`` or ``host``, as ssh expects it."""
        return f"{self.user}@{self.host}" if self.user else self.host

    def remote_command(self, argv: Sequence[str], *, privileged: bool) -> str:
        """The one command line the remote shell runs."""
        words = list(argv)
        if privileged and self.sudo:
            # -n: fail rather than wait for a password nobody will type.
            words = ["sudo", "-n", "--", *words]
        return shlex.join(words)

    def ssh_argv(self, argv: Sequence[str], *, privileged: bool = False) -> list[str]:
        """The local ``ssh`` invocation that runs ``argv`` on the host."""
        port = ["-p", str(self.port)] if self.port else []
        return [
            self.ssh,
            *self._shared,
            *port,
            "--",
            self.destination,
            self.remote_command(argv, privileged=privileged),
        ]

    def scp_argv(self, source: Path, destination: str) -> list[str]:
        """The local ``scp`` invocation that copies ``source`` to ``destination`` on the host."""
        port = ["-P", str(self.port)] if self.port else []
        host = f"[{self.host}]" if ":" in self.host else self.host
        target = f"{self.user}@{host}" if self.user else host
        return [self.scp, "-q", *self._shared, *port, "--", str(source), f"{target}:{destination}"]

    def run(
        self, argv: Sequence[str], *, privileged: bool = False, timeout_s: float | None = None
    ) -> CommandResult:
        """Run ``argv`` on the host; a timeout reads as a failed command, not an exception."""
        return _execute(tuple(argv), self.ssh_argv(argv, privileged=privileged), timeout_s)

    def copy(self, source: Path, destination: str) -> CommandResult:
        """Copy a local file to a path on the host that the login user may write."""
        return _execute(("scp", str(source), destination), self.scp_argv(source, destination), None)


def _execute(shown: tuple[str, ...], argv: list[str], timeout_s: float | None) -> CommandResult:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return CommandResult(shown, SSH_FAILURE, "", f"timed out after {timeout_s:g} s")
    except OSError as exc:
        return CommandResult(shown, SSH_FAILURE, "", f"cannot run {argv[0]}: {exc.strerror}")
    return CommandResult(shown, done.returncode, done.stdout, done.stderr)
