"""The rollout itself: the steps for one host, and the order and halting rule for the fleet.

For each target: ensure the repository; read the installed version; decide (absent: install,
stale: upgrade, current: nothing); if there is work, stop the unit (only when its file exists)
and run dnf, showing dnf's output only when it fails; sync the config files; daemon-reload;
start or restart the unit when something changed or it is not running; wait for /health.

Gateways go first, then neurons one at a time; the first failure halts the roll unless
``keep_going``. A failure never leaves a host down that was up: when an install fails after
the stop, the previous version is started again.

Everything reaches hosts through :class:`~cortex_deploy.transport.Transport`, so this module
has no I/O of its own and runs in tests against throwaway roots.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from cortex_deploy.host import NOT_INSTALLED, Clock, Echo, Freshness, HostError, HostSession
from cortex_deploy.manifest import Manifest, Repo, Target
from cortex_deploy.transport import Transport

TransportFactory = Callable[[str], Transport]


class Result(enum.Enum):
    """How a target ended."""

    INSTALLED = "installed"
    UPGRADED = "upgraded"
    CURRENT = "current"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass
class Outcome:
    """One row of the closing table."""

    host: str
    role: str
    package: str
    before: str = "?"
    after: str = "?"
    result: Result = Result.SKIPPED
    detail: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether this target failed (skipped ones did not)."""
        return self.result is Result.FAILED


def roll_target(session: HostSession, target: Target, repo: Repo) -> Outcome:
    """Bring one target up to date; never raises for a host problem."""
    outcome = Outcome(target.host, target.role, target.package)
    try:
        _roll(session, target, repo, outcome)
    except HostError as exc:
        outcome.result = Result.FAILED
        outcome.detail = str(exc)
        if exc.result is not None:
            session.show(f"{exc}:", exc.result)
        else:
            session.say(str(exc))
    return outcome


def _roll(session: HostSession, target: Target, repo: Repo, outcome: Outcome) -> None:
    session.dnf()
    session.ensure_repo(repo)
    outcome.before = outcome.after = session.installed_version(target.package)
    freshness = session.freshness(target.package, outcome.before)
    stopped = False
    if freshness is Freshness.CURRENT:
        outcome.result = Result.CURRENT
        session.say(f"{target.package} {outcome.before} is current")
    else:
        stopped = _install(session, target, freshness, outcome)
    config_changed = _sync_files(session, target, outcome)
    reload = session.systemctl("daemon-reload")
    if not reload.ok:
        raise HostError("systemctl daemon-reload failed", reload)
    enable = session.systemctl("enable", target.unit)
    if not enable.ok:
        session.show(f"warning: could not enable {target.unit}:", enable)
    _start(session, target, stopped=stopped, config_changed=config_changed, outcome=outcome)
    if not session.wait_healthy(target.health_url, target.health_timeout_s):
        raise HostError(f"{target.health_url} did not answer within {target.health_timeout_s:g} s")
    session.say(f"healthy ({target.health_url})")
    if outcome.notes and outcome.result is Result.CURRENT:
        outcome.detail = ", ".join(outcome.notes)


def _install(session: HostSession, target: Target, freshness: Freshness, outcome: Outcome) -> bool:
    """Stop the unit if installed, install or upgrade; return whether the unit was stopped."""
    dnf = session.dnf()
    absent = freshness is Freshness.ABSENT
    session.say(
        f"{target.package} {outcome.before}: "
        + ("installing" if absent else "upgrade available" if freshness is Freshness.STALE else "upgrading")
    )
    was_active = False
    stopped = False
    if session.unit_exists(target.unit):
        was_active = session.is_active(target.unit)
        session.say(f"stopping {target.unit}")
        stop = session.systemctl("stop", target.unit)
        if not stop.ok:
            raise HostError(f"could not stop {target.unit}", stop)
        stopped = True
    command = dnf.install(target.package) if absent else dnf.upgrade(target.package)
    result = session.run(command, privileged=True)
    if not result.ok:
        session.show(f"{' '.join(command)} failed:", result)
        if was_active:
            session.say(f"starting {target.unit} again on {outcome.before}")
            session.systemctl("start", target.unit)
        raise HostError(f"dnf {command[1]} {target.package} failed (exit {result.returncode})")
    outcome.after = session.installed_version(target.package)
    if outcome.after == outcome.before:
        outcome.result = Result.CURRENT
        session.say(f"{target.package} stays at {outcome.after}")
    else:
        outcome.result = Result.INSTALLED if outcome.before == NOT_INSTALLED else Result.UPGRADED
        session.say(f"{outcome.result.value} {target.package} {outcome.after}")
    return stopped


def _sync_files(session: HostSession, target: Target, outcome: Outcome) -> bool:
    changed = False
    for wanted in target.files:
        if session.sync_file(wanted):
            changed = True
            session.say(f"updated {wanted.describe}")
            outcome.notes.append(f"updated {wanted.destination}")
    return changed


def _start(
    session: HostSession, target: Target, *, stopped: bool, config_changed: bool, outcome: Outcome
) -> None:
    if stopped or not session.is_active(target.unit):
        verb = "start"
    elif config_changed or outcome.result in (Result.INSTALLED, Result.UPGRADED):
        verb = "restart"
        outcome.notes.append("restarted")
    else:
        session.say(f"{target.unit} is running")
        return
    session.say(f"{verb}ing {target.unit}")
    result = session.systemctl(verb, target.unit)
    if not result.ok:
        raise HostError(f"could not {verb} {target.unit}", result)


def roll_fleet(
    manifest: Manifest,
    transport_for: TransportFactory,
    echo: Echo,
    *,
    keep_going: bool = False,
    clock: Clock | None = None,
) -> list[Outcome]:
    """Roll every target in manifest order; halt at the first failure unless ``keep_going``."""
    outcomes: list[Outcome] = []
    halted = False
    for target in manifest.targets:
        if halted:
            outcomes.append(
                Outcome(target.host, target.role, target.package, detail="an earlier host failed")
            )
            continue
        session = HostSession(transport_for(target.host), echo, clock or Clock())
        outcome = roll_target(session, target, manifest.repo)
        outcomes.append(outcome)
        if outcome.failed and not keep_going:
            halted = True
            echo(f"[{target.host}] halting the rollout (use --keep-going to continue past failures)")
    return outcomes
