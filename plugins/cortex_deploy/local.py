"""Reach "a host" on this machine: commands run here, optionally against a throwaway root.

With ``root`` set, the host's filesystem is that directory: every :class:`HostPath` argument
is rebased under it, ``rpm`` gets ``--root`` and ``dnf`` gets ``--installroot`` (plus
``--releasever``, which dnf cannot guess for an empty root). Everything else runs as is, as
the local user. That is enough to drive the real rpm, dnf and createrepo_c in tests, or to
lay packages into an image root.

``programs`` replaces named programs with in-process handlers. It exists for what cannot run
on a build machine, a live systemd above all; tests pass a recording double there.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cortex_deploy.transport import CommandResult, HostPath

ProgramHandler = Callable[[Sequence[str]], CommandResult]


@dataclass
class LocalTransport:
    """Run the rollout's commands on this machine, each host mapped onto its own ``root``."""

    host: str = "localhost"
    root: Path | None = None
    releasever: str = "local"
    dnf_options: tuple[str, ...] = ()
    programs: Mapping[str, ProgramHandler] = field(default_factory=dict)

    def rebase(self, argv: Sequence[str]) -> list[str]:
        """The command as it runs here: host paths under ``root``, rpm and dnf pointed at it."""
        if self.root is None:
            return [str(arg) for arg in argv]
        words = [self._local_path(arg) if isinstance(arg, HostPath) else str(arg) for arg in argv]
        if words and words[0] == "rpm":
            words[1:1] = ["--root", str(self.root)]
        elif words and words[0] == "dnf":
            words[1:1] = [f"--installroot={self.root}", f"--releasever={self.releasever}", *self.dnf_options]
        return words

    def _local_path(self, path: str) -> str:
        assert self.root is not None
        return str(self.root / path.lstrip("/"))

    def run(
        self, argv: Sequence[str], *, privileged: bool = False, timeout_s: float | None = None
    ) -> CommandResult:
        """Run ``argv`` here (``privileged`` is moot: everything runs as the local user)."""
        shown = tuple(str(arg) for arg in argv)
        handler = self.programs.get(shown[0]) if shown else None
        if handler is not None:
            return handler(shown)
        words = self.rebase(argv)
        try:
            done = subprocess.run(words, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            return CommandResult(shown, 124, "", f"timed out after {timeout_s:g} s")
        except OSError as exc:
            return CommandResult(shown, 127, "", f"cannot run {words[0]}: {exc.strerror}")
        return CommandResult(shown, done.returncode, done.stdout, done.stderr)

    def copy(self, source: Path, destination: str) -> CommandResult:
        """Copy ``source`` to ``destination`` (rebased when it is a :class:`HostPath`)."""
        target = (
            self._local_path(destination) if isinstance(destination, HostPath) and self.root else destination
        )
        shown = ("cp", str(source), str(destination))
        try:
            shutil.copyfile(source, target)
        except OSError as exc:
            return CommandResult(shown, 1, "", f"cannot copy: {exc}")
        return CommandResult(shown, 0)
