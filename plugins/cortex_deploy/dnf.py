"""The dnf command lines a rollout needs, in dnf4 and dnf5 syntax.

Fedora 41 replaced dnf4 with dnf5, and the two disagree on ``config-manager`` (dnf5 turned
its options into subcommands) and on ``install`` (dnf5 no longer upgrades an installed
package). A fleet may mix both, so each host is asked (``dnf --version``) and gets its own
dialect. These are plain functions of their inputs: every command line here is checked
exactly in the tests, and the dnf4 ones also run for real there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# `dnf check-update` exits 100 when updates are available, 0 when there are none.
CHECK_UPDATE_AVAILABLE = 100

VERSION_COMMAND = ("dnf", "--version")


@dataclass(frozen=True)
class DnfDialect:
    """Command lines for one major version of dnf."""

    major: Literal[4, 5]

    def add_repo(self, repo_file_url: str) -> list[str]:
        """Download a ``.repo`` file into the repository directory."""
        if self.major == 5:
            return ["dnf", "config-manager", "addrepo", f"--from-repofile={repo_file_url}"]
        return ["dnf", "config-manager", "--add-repo", repo_file_url]

    def enable_repo(self, repo_id: str) -> list[str]:
        """Set ``enabled=1`` on a repository (repo files may ship disabled)."""
        if self.major == 5:
            return ["dnf", "config-manager", "setopt", f"{repo_id}.enabled=1"]
        return ["dnf", "config-manager", "--set-enabled", repo_id]

    def check_update(self, package: str) -> list[str]:
        """Exit 0 when ``package`` is current, 100 when the repos offer a newer build."""
        return ["dnf", "check-update", "--refresh", "-q", package]

    def install(self, package: str) -> list[str]:
        """Install an absent package; ``--allowerasing`` lets it replace a conflicting flavour."""
        return ["dnf", "install", "-y", "--refresh", "--allowerasing", package]

    def upgrade(self, package: str) -> list[str]:
        """Upgrade an installed package (dnf5's ``install`` would leave it alone)."""
        return ["dnf", "upgrade", "-y", "--refresh", package]


DNF4 = DnfDialect(4)
DNF5 = DnfDialect(5)

_DNF5 = re.compile(r"^\s*(dnf5\b|5\.)")
_DNF4 = re.compile(r"^\s*4\.")


def detect_dialect(version_output: str) -> DnfDialect | None:
    """Tell dnf4 from dnf5 by the first line of ``dnf --version``.

    dnf5 prints ``dnf5 version 5.2.8.1``; dnf4 prints its bare version (``4.14.0``). Anything
    else is not a dnf this rollout knows, and gets None.
    """
    first = next((line for line in version_output.splitlines() if line.strip()), "")
    if _DNF5.match(first):
        return DNF5
    if _DNF4.match(first):
        return DNF4
    return None
