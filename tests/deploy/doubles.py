"""Test doubles for what cannot run on a build machine: a live systemd, and dnf5.

Everything else in the deploy tests is real: rpm, dnf4 with its config-manager plugin,
createrepo_c, curl, install(1) and friends, run through LocalTransport against throwaway roots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cortex_deploy.transport import CommandResult


@dataclass
class RecordingSystemctl:
    """Stands in for ``systemctl`` (there is no systemd to talk to here).

    Records every call and keeps the set of active units, so ``is-active`` answers the way a
    real systemd would after the recorded starts and stops. ``fail`` names verbs that fail.
    """

    active: set[str] = field(default_factory=set)
    fail: set[str] = field(default_factory=set)
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        args = tuple(argv[1:])
        self.calls.append(args)
        verb, unit = args[0], args[-1]
        if verb in self.fail:
            return CommandResult(tuple(argv), 1, "", f"Job for {unit} failed.")
        if verb == "is-active":
            return CommandResult(tuple(argv), 0 if unit in self.active else 3)
        if verb in ("start", "restart"):
            self.active.add(unit)
        elif verb == "stop":
            self.active.discard(unit)
        return CommandResult(tuple(argv), 0)

    @property
    def changes(self) -> list[tuple[str, ...]]:
        """The calls that change something (everything but is-active queries)."""
        return [call for call in self.calls if call[0] != "is-active"]


Answer = Callable[[tuple[str, ...]], CommandResult]


@dataclass
class ScriptedHost:
    """A Transport double that answers from a script and records exact command lines.

    Used for dnf5, which Debian does not ship: the test scripts what a dnf5 host prints and
    checks, command by command, that the rollout speaks dnf5's syntax. ``answers`` maps an
    argv prefix to a result (the longest matching prefix wins); anything else succeeds
    silently.
    """

    host: str
    answers: dict[tuple[str, ...], Answer] = field(default_factory=dict)
    commands: list[tuple[tuple[str, ...], bool]] = field(default_factory=list)
    copies: list[tuple[Path, str]] = field(default_factory=list)

    def run(
        self, argv: Sequence[str], *, privileged: bool = False, timeout_s: float | None = None
    ) -> CommandResult:
        command = tuple(str(arg) for arg in argv)
        self.commands.append((command, privileged))
        matches = [prefix for prefix in self.answers if command[: len(prefix)] == prefix]
        if matches:
            return self.answers[max(matches, key=len)](command)
        return CommandResult(command, 0)

    def copy(self, source: Path, destination: str) -> CommandResult:
        self.copies.append((source, destination))
        return CommandResult(("scp", str(source), destination), 0)

    @property
    def argvs(self) -> list[tuple[str, ...]]:
        """Every command line run, in order."""
        return [command for command, _ in self.commands]


def reply(returncode: int = 0, stdout: str = "", stderr: str = "") -> Answer:
    """A scripted answer with a fixed exit status and output."""
    return lambda argv: CommandResult(argv, returncode, stdout, stderr)
