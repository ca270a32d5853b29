"""What the rollout asks of one host, each question answered with one or two commands.

These are the original rollout script's helpers (``installed_nvr``, its repo bootstrap,
``needs_update``) with their later fixes, on top of a :class:`Transport`. Nothing here
decides what to do next; :mod:`cortex_deploy.rollout` does.
"""

from __future__ import annotations

import enum
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cortex_deploy.dnf import CHECK_UPDATE_AVAILABLE, VERSION_COMMAND, DnfDialect, detect_dialect
from cortex_deploy.manifest import Repo, SyncFile
from cortex_deploy.transport import CommandResult, HostPath, Transport

NOT_INSTALLED = "(not installed)"
UNIT_DIR = "/usr/lib/systemd/system"
HEALTH_PROBE_TIMEOUT_S = 5.0

Echo = Callable[[str], None]


class Freshness(enum.Enum):
    """How an installed package compares with what the repositories offer."""

    ABSENT = "absent"
    CURRENT = "current"
    STALE = "stale"
    UNKNOWN = "unknown"  # dnf check-update failed: treat as stale so the upgrade shows the error


def prefixed(host: str, text: str, indent: str = "  ") -> str:
    """Every line of ``text`` behind ``[host]``, so interleaved output stays attributable."""
    return "\n".join(f"[{host}] {indent}{line}" for line in text.splitlines())


@dataclass(frozen=True)
class Clock:
    """Time, injectable so waiting on /health is testable without waiting."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass
class HostSession:
    """One host during one rollout: its transport, its dnf dialect, and a message sink."""

    transport: Transport
    echo: Echo
    clock: Clock = field(default_factory=Clock)
    _dialect: DnfDialect | None = field(init=False, default=None)

    @property
    def host(self) -> str:
        """The host's name, as messages print it."""
        return self.transport.host

    def say(self, message: str) -> None:
        """Print one message line for this host."""
        self.echo(f"[{self.host}] {message}")

    def show(self, heading: str, result: CommandResult) -> None:
        """Print a failed command's heading and its full output, every line prefixed."""
        self.say(heading)
        if result.output:
            self.echo(prefixed(self.host, result.output))

    def run(
        self, argv: Sequence[str], *, privileged: bool = False, timeout_s: float | None = None
    ) -> CommandResult:
        """Run one command on the host."""
        return self.transport.run(argv, privileged=privileged, timeout_s=timeout_s)

    # -- dnf and rpm --------------------------------------------------------------------------

    def dnf(self) -> DnfDialect:
        """The host's dnf dialect, asked once. Raises :class:`HostError` when there is no dnf."""
        if self._dialect is None:
            result = self.run(VERSION_COMMAND)
            dialect = detect_dialect(result.stdout) if result.ok else None
            if dialect is None:
                raise HostError("cannot tell which dnf this host has (dnf --version)", result)
            self._dialect = dialect
        return self._dialect

    def installed_version(self, package: str) -> str:
        """``version-release`` of the installed package, or ``(not installed)``.

        rpm prints "package X is not installed" on *stdout* and exits 1, so the exit status,
        not the output, decides; the output is only used on success.
        """
        result = self.run(["rpm", "-q", "--qf", "%{version}-%{release}", package])
        if not result.ok or not result.stdout.strip():
            return NOT_INSTALLED
        return result.stdout.strip()

    def freshness(self, package: str, installed: str) -> Freshness:
        """Whether ``package`` (``installed`` is its :meth:`installed_version`) needs work.

        rpm has to be asked first because ``dnf check-update`` exits 0 for a package that is
        not installed at all. Any check-update failure other than "update available" comes
        back as UNKNOWN: the caller then upgrades, and dnf shows the real error there.
        """
        if installed == NOT_INSTALLED:
            return Freshness.ABSENT
        result = self.run(self.dnf().check_update(package), privileged=True)
        if result.returncode == 0:
            return Freshness.CURRENT
        if result.returncode == CHECK_UPDATE_AVAILABLE:
            return Freshness.STALE
        self.show(f"dnf check-update failed (exit {result.returncode}); trying the upgrade anyway:", result)
        return Freshness.UNKNOWN

    def ensure_repo(self, repo: Repo) -> None:
        """Add the repository when its file is missing, then enable it (every run).

        The repo file may ship with ``enabled=0`` (an unstable channel should not switch itself
        on), so enabling is not a one-off. Failures only warn: the install that follows reports
        a missing package far more clearly than this step could.
        """
        dnf = self.dnf()
        if not self.exists(repo.path):
            self.say(f"adding repository {repo.id} from {repo.url}")
            added = self.run(dnf.add_repo(repo.url), privileged=True)
            if not added.ok:
                self.show(f"warning: could not add repository {repo.id}:", added)
        enabled = self.run(dnf.enable_repo(repo.id), privileged=True)
        if not enabled.ok:
            self.show(f"warning: could not enable repository {repo.id}:", enabled)

    # -- files --------------------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        """Whether a regular file exists at ``path`` on the host."""
        return self.run(["test", "-f", HostPath(path)]).ok

    def unit_exists(self, unit: str) -> bool:
        """Whether the package's unit file is installed (a fresh host has none)."""
        return self.exists(f"{UNIT_DIR}/{unit}")

    def sync_file(self, wanted: SyncFile) -> bool:
        """Make the host's copy of a config file match, with its owner and mode.

        Returns whether the content changed (the daemon then needs a restart). Ownership and
        mode are applied every run, so a hand-edited permission is put back without a restart.
        Raises :class:`HostError` on failure.
        """
        destination = HostPath(wanted.destination)
        local_digest = hashlib.sha256(wanted.source.read_bytes()).hexdigest()
        current = self.run(["sha256sum", destination], privileged=True)
        changed = not (current.ok and current.stdout.split(" ", 1)[0] == local_digest)
        owner = f"{wanted.owner}:{wanted.group}"
        mode = f"{wanted.mode:04o}"
        if changed:
            staged = self.run(["mktemp"])
            if not staged.ok:
                raise HostError("cannot make a staging file (mktemp)", staged)
            staging = staged.stdout.strip()
            install = ["install", "-o", wanted.owner, "-g", wanted.group, "-m", mode, staging, destination]
            try:
                copied = self.transport.copy(wanted.source, staging)
                result = self.run(install, privileged=True) if copied.ok else copied
                if not result.ok:
                    raise HostError(f"cannot install {wanted.describe}", result)
            finally:
                self.run(["rm", "-f", staging])
            return True
        for argv in (["chown", owner, destination], ["chmod", mode, destination]):
            result = self.run(argv, privileged=True)
            if not result.ok:
                raise HostError(f"cannot set {owner} {mode} on {wanted.destination}", result)
        return False

    # -- systemd and health -------------------------------------------------------------------

    def systemctl(self, *args: str) -> CommandResult:
        """``systemctl ARGS`` as root."""
        return self.run(["systemctl", *args], privileged=True)

    def is_active(self, unit: str) -> bool:
        """Whether the unit is running now."""
        return self.run(["systemctl", "is-active", "--quiet", unit]).ok

    def wait_healthy(self, url: str, timeout_s: float, interval_s: float = 1.0) -> bool:
        """Poll ``url`` from the host itself until it answers 2xx or ``timeout_s`` passes.

        The probe runs on the host (curl against loopback by default), so it does not depend
        on the operator's route to the daemon's port or on the firewall.
        """
        deadline = self.clock.now() + timeout_s
        probe = ["curl", "-fsS", "-o", "/dev/null", "--max-time", f"{HEALTH_PROBE_TIMEOUT_S:g}", url]
        while True:
            if self.run(probe, timeout_s=HEALTH_PROBE_TIMEOUT_S + 5).ok:
                return True
            if self.clock.now() + interval_s > deadline:
                return False
            self.clock.sleep(interval_s)


class HostError(Exception):
    """A step failed on a host; carries the command result to show the operator."""

    def __init__(self, message: str, result: CommandResult | None = None) -> None:
        super().__init__(message)
        self.result = result
