"""What the operator reads: the dry-run plan and the closing table."""

from __future__ import annotations

from collections.abc import Sequence

from cortex_deploy.manifest import Manifest
from cortex_deploy.rollout import Outcome, Result

ARROW = "→"


def render_table(outcomes: Sequence[Outcome]) -> str:
    """One row per target: host, role, package, version before → after, and the result."""
    rows = [("HOST", "ROLE", "PACKAGE", "VERSION", "RESULT")]
    for outcome in outcomes:
        result = outcome.result.value
        if outcome.detail:
            result += f" ({outcome.detail})"
        rows.append(
            (outcome.host, outcome.role, outcome.package, f"{outcome.before} {ARROW} {outcome.after}", result)
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    )


def summary(outcomes: Sequence[Outcome]) -> str:
    """One closing line: how many targets ended which way."""
    counts = {result: sum(1 for o in outcomes if o.result is result) for result in Result}
    return ", ".join(f"{count} {result.value}" for result, count in counts.items() if count)


def render_plan(manifest: Manifest) -> str:
    """The dry run: what would be done, host by host, without contacting any host."""
    repo = manifest.repo
    ssh = manifest.ssh
    login = f"{ssh.user}@HOST" if ssh.user else "HOST"
    lines = [
        f"dry run of {manifest.path}: nothing is contacted or changed",
        f"hosts are reached as {login} over ssh"
        + (", privileged commands through sudo -n" if ssh.sudo else ""),
        "order: gateways first, then neurons one at a time; stop at the first failure",
    ]
    for number, target in enumerate(manifest.targets, start=1):
        host = f"[{target.host}]"
        lines += [
            f"{number}. {host} {target.role}: {target.package} ({target.unit})",
            f"{host}   ensure repository {repo.id} ({repo.path}, from {repo.url}) and enable it",
            f"{host}   install {target.package} when absent, upgrade it when dnf offers a newer build",
            f"{host}   before installing, stop {target.unit} if its unit file exists",
        ]
        lines += [f"{host}   sync {file.source} -> {file.describe}" for file in target.files]
        lines += [
            f"{host}   systemctl daemon-reload; enable {target.unit}; start it, or restart it on changes",
            f"{host}   wait up to {target.health_timeout_s:g} s for {target.health_url}",
        ]
    return "\n".join(lines)
