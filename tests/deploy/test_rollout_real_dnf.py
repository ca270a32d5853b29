"""Rollouts against real rpm, dnf4 and createrepo_c, each host a throwaway --installroot.

Only systemctl is a double (RecordingSystemctl): there is no systemd to start units in a
directory. Health checks are real curl probes against a loopback server (or a dead port).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from cortex_deploy.host import HostSession
from cortex_deploy.rollout import Result
from tests.deploy.conftest import NEW, OLD, REPO_ID, FakeHost, PackageRepo, Rollout

GATEWAY = ("cortex-kernel", "cortex-kernel.service")
NEURON = ("cortex-neuron-cpu", "cortex-neuron.service")


def gateway(host: str, health_url: str, **extra: object) -> dict[str, object]:
    return {"host": host, "health_url": health_url, "health_timeout_s": 5.0, **extra}


def neuron(host: str, health_url: str, flavour: str = "cpu", **extra: object) -> dict[str, object]:
    return {"host": host, "flavour": flavour, "health_url": health_url, "health_timeout_s": 0.5, **extra}


def config_file(tmp_path: Path, text: str = "[gateway]\n") -> dict[str, object]:
    source = tmp_path / "cortex.toml"
    source.write_text(text)
    return {
        "source": source.name,
        "destination": "/etc/cortex/cortex.toml",
        "owner": "root",
        "group": "daemon",
        "mode": "0640",
    }


def dnf_chatter(text: str) -> bool:
    """Whether dnf's own transaction output was printed (it should be only on failure)."""
    return "Transaction Summary" in text or "Complete!" in text


def test_fresh_install(
    package_repo: PackageRepo,
    make_host: Callable[[str], FakeHost],
    roll: Callable[..., Rollout],
    health_url: str,
    tmp_path: Path,
) -> None:
    package_repo.publish(("cortex-kernel", OLD), ("cortex-kernel", NEW))
    host = make_host("gw1")

    done = roll(package_repo, [host], gateways=[gateway("gw1", health_url, files=[config_file(tmp_path)])])

    outcome = done.outcome("gw1")
    assert (outcome.result, outcome.before, outcome.after) == (
        Result.INSTALLED,
        "(not installed)",
        f"{NEW}-1",
    )
    assert host.version("cortex-kernel") == f"{NEW}-1"  # the release, not the pre-release
    synced = host.root / "etc/cortex/cortex.toml"
    assert synced.read_text() == "[gateway]\n"
    info = synced.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o640, 0, 1)  # root:daemon
    assert host.systemctl.changes == [
        ("daemon-reload",),
        ("enable", "cortex-kernel.service"),
        ("start", "cortex-kernel.service"),
    ]
    assert "[gw1] healthy" in done.text
    assert not dnf_chatter(done.text)


def test_unit_file_absent_on_fresh_host_means_no_stop(
    package_repo: PackageRepo,
    make_host: Callable[[str], FakeHost],
    roll: Callable[..., Rollout],
    health_url: str,
) -> None:
    package_repo.publish(("cortex-neuron-cpu", NEW))
    host = make_host("n1")
    assert not (host.root / "usr/lib/systemd/system/cortex-neuron.service").exists()

    done = roll(package_repo, [host], neurons=[neuron("n1", health_url)])

    assert done.outcome("n1").result is Result.INSTALLED
    assert not [call for call in host.systemctl.calls if call[0] == "stop"]
    assert "stopping" not in done.text


def test_already_current_changes_nothing(
    package_repo: PackageRepo,
    make_host: Callable[[str], FakeHost],
    roll: Callable[..., Rollout],
    health_url: str,
    tmp_path: Path,
) -> None:
    package_repo.publish(("cortex-kernel", NEW))
    host = make_host("gw1")
    host.add_repo(package_repo, enabled=True)
    host.preinstall(package_repo.rpms[("cortex-kernel", NEW)])
    (host.root / "etc/cortex/cortex.toml").write_text("[gateway]\n")
    os.chmod(host.root / "etc/cortex/cortex.toml", 0o600)  # drifted: fixed without a restart
    host.systemctl.active.add("cortex-kernel.service")

    done = roll(package_repo, [host], gateways=[gateway("gw1", health_url, files=[config_file(tmp_path)])])

    outcome = done.outcome("gw1")
    assert (outcome.result, outcome.before, outcome.after) == (Result.CURRENT, f"{NEW}-1", f"{NEW}-1")
    assert host.systemctl.changes == [("daemon-reload",), ("enable", "cortex-kernel.service")]
    assert stat.S_IMODE((host.root / "etc/cortex/cortex.toml").stat().st_mode) == 0o640
    assert "is current" in done.text


def test_changed_config_restarts_a_current_host(
    package_repo: PackageRepo,
    make_host: Callable[[str], FakeHost],
    roll: Callable[..., Rollout],
    health_url: str,
    tmp_path: Path,
) -> None:
    package_repo.publish(("cortex-kernel", NEW))
    host = make_host("gw1")
    host.add_repo(package_repo, enabled=True)
    host.preinstall(package_repo.rpms[("cortex-kernel", NEW)])
    (host.root / "etc/cortex/cortex.toml").write_text("[gateway]\n# old\n")
    host.systemctl.active.add("cortex-kernel.service")

    done = roll(package_repo, [host], gateways=[gateway("gw1", health_url, files=[config_file(tmp_path)])])

    outcome = done.outcome("gw1")
    assert outcome.result is Result.CURRENT
    assert "updated /etc/cortex/cortex.toml" in outcome.detail
    assert host.systemctl.changes[-1] == ("restart", "cortex-kernel.service")


def test_upgrade_available(
    package_repo: PackageRepo,
    make_host: Callable[[str], FakeHost],
    roll: Callable[..., Rollout],
    health_url: str,
) -> None:
    package_repo.publish(("cortex-kernel", OLD), ("cortex-kernel", NEW))
    host = make_host("gw1")
    host.add_repo(package_repo, enabled=True)
    host.preinstall(package_repo.rpms[("cortex-kernel", OLD)])
    host.systemctl.active.add("cortex-kernel.service")

    done = roll(package_repo, [host], gateways=[gateway("gw1", health_url)])

    outcome = done.outcome("gw1")
    assert (outcome.result, outcome.before, outcome.after) == (Result.UPGRADED, f"{OLD}-1", f"{NEW}-1")
    assert host.version("cortex-kernel") == f"{NEW}-1"
    # The unit file exists (the old package shipped it), so it is stopped before dnf runs.
    assert host.systemctl.changes == [
        ("stop", "cortex-kernel.service"),
        ("daemon-reload",),
        ("enable", "cortex-kernel.service"),
        ("start", "cortex-kernel.service"),
    ]
    assert "upgrade available" in done.text
    assert not dnf_chatter(done.text)


def test_repo_missing_is_added_then_enabled(
    package_repo: PackageRepo,
    make_host: Callable[[str], FakeHost],
    roll: Callable[..., Rollout],
    health_url: str,
) -> None:
    package_repo.publish(("cortex-kernel", NEW))
    host = make_host("gw1")
    repo_file = host.root / "etc/yum.repos.d" / package_repo.repo_file.name
    assert not repo_file.exists()

    done = roll(package_repo, [host], gateways=[gateway("gw1", health_url)])

    assert f"[gw1] adding repository {REPO_ID}" in done.text
    # The upstream file ships enabled=0; the rollout switched it on in the host's copy.
    assert "enabled=1" in repo_file.read_text()
    assert "enabled=0" in package_repo.repo_file.read_text()
    assert done.outcome("gw1").result is Result.INSTALLED
    assert not Path("/etc/yum.repos.d", package_repo.repo_file.name).exists()  # nothing leaked out


def test_repo_disabled_is_enabled_before_the_update_check(
    package_repo: PackageRepo,
    make_host: Callable[[str], FakeHost],
    roll: Callable[..., Rollout],
    health_url: str,
) -> None:
    package_repo.publish(("cortex-kernel", OLD), ("cortex-kernel", NEW))
    host = make_host("gw1")
    repo_file = host.add_repo(package_repo, enabled=False)
    host.preinstall(package_repo.rpms[("cortex-kernel", OLD)])

    done = roll(package_repo, [host], gateways=[gateway("gw1", health_url)])

    assert "adding repository" not in done.text
    assert "enabled=1" in repo_file.read_text()
    # Had the repo stayed disabled, check-update would have called the old build current.
    assert done.outcome("gw1").result is Result.UPGRADED


def test_dnf_failure_shows_its_output_prefixed(
    package_repo: PackageRepo,
    make_host: Callable[[str], FakeHost],
    roll: Callable[..., Rollout],
    health_url: str,
) -> None:
    package_repo.publish(("cortex-neuron-cpu", NEW))  # the vllm flavour was never published
    host = make_host("n1")

    done = roll(package_repo, [host], neurons=[neuron("n1", health_url, flavour="vllm")])

    outcome = done.outcome("n1")
    assert outcome.result is Result.FAILED
    assert outcome.package == "cortex-neuron-vllm"
    assert "[n1] dnf install -y --refresh --allowerasing cortex-neuron-vllm failed:" in done.lines
    dnf_lines = [line for line in done.lines if "cortex-neuron-vllm" in line and "No match" in line]
    assert dnf_lines, done.text
    assert all(line.startswith("[n1]   ") for line in dnf_lines)
    assert not [call for call in host.systemctl.calls if call[0] in ("start", "restart")]


def test_failed_upgrade_starts_the_previous_version_again(
    package_repo: PackageRepo,
    make_host: Callable[[str], FakeHost],
    roll: Callable[..., Rollout],
    health_url: str,
) -> None:
    package_repo.publish(("cortex-kernel", OLD), ("cortex-kernel", NEW))
    host = make_host("gw1")
    host.add_repo(package_repo, enabled=True)
    host.preinstall(package_repo.rpms[("cortex-kernel", OLD)])
    host.systemctl.active.add("cortex-kernel.service")
    published = package_repo.directory / f"cortex-kernel-{NEW}-1.noarch.rpm"
    published.write_bytes(published.read_bytes()[:-64])  # corrupted after createrepo_c ran

    done = roll(package_repo, [host], gateways=[gateway("gw1", health_url)])

    outcome = done.outcome("gw1")
    assert outcome.result is Result.FAILED
    assert host.version("cortex-kernel") == f"{OLD}-1"
    assert host.systemctl.changes == [("stop", "cortex-kernel.service"), ("start", "cortex-kernel.service")]
    assert "cortex-kernel.service" in host.systemctl.active
    assert any(line.startswith("[gw1]   ") for line in done.lines)


def test_check_update_failure_falls_through_to_the_upgrade_error(
    package_repo: PackageRepo,
    make_host: Callable[[str], FakeHost],
    roll: Callable[..., Rollout],
    health_url: str,
) -> None:
    host = make_host("gw1")
    host.add_repo(package_repo, enabled=True, baseurl=(package_repo.directory / "gone").as_uri())
    host.preinstall(package_repo.rpms[("cortex-kernel", OLD)])

    done = roll(package_repo, [host], gateways=[gateway("gw1", health_url)])

    assert "[gw1] dnf check-update failed" in done.text
    assert "[gw1] dnf upgrade -y --refresh cortex-kernel failed:" in done.lines
    assert done.outcome("gw1").result is Result.FAILED


def test_not_installed_is_reported_although_rpm_says_so_on_stdout(
    make_host: Callable[[str], FakeHost],
) -> None:
    host = make_host("gw1")
    raw = host.transport.run(["rpm", "-q", "--qf", "%{version}-%{release}", "cortex-kernel"])
    assert raw.returncode == 1 and "is not installed" in raw.stdout  # the trap

    session = HostSession(host.transport, echo=lambda line: None)
    assert session.installed_version("cortex-kernel") == "(not installed)"


def test_unhealthy_neuron_halts_the_roll(
    package_repo: PackageRepo,
    make_host: Callable[[str], FakeHost],
    roll: Callable[..., Rollout],
    health_url: str,
    dead_health_url: str,
) -> None:
    package_repo.publish(("cortex-kernel", NEW), ("cortex-neuron-cpu", NEW))
    hosts = [make_host("gw1"), make_host("n1"), make_host("n2")]

    done = roll(
        package_repo,
        hosts,
        gateways=[gateway("gw1", health_url)],
        neurons=[neuron("n1", dead_health_url), neuron("n2", health_url)],
    )

    assert [o.result for o in done.outcomes] == [Result.INSTALLED, Result.FAILED, Result.SKIPPED]
    assert dead_health_url in done.outcome("n1").detail
    assert hosts[1].systemctl.changes[-1] == ("start", "cortex-neuron.service")
    assert hosts[2].systemctl.calls == []
    assert hosts[2].version("cortex-neuron-cpu") is None
    assert "[n1] halting the rollout" in done.text


def test_keep_going_rolls_past_a_failed_neuron(
    package_repo: PackageRepo,
    make_host: Callable[[str], FakeHost],
    roll: Callable[..., Rollout],
    health_url: str,
    dead_health_url: str,
) -> None:
    package_repo.publish(("cortex-neuron-cpu", NEW))
    hosts = [make_host("n1"), make_host("n2")]

    done = roll(
        package_repo,
        hosts,
        neurons=[neuron("n1", dead_health_url), neuron("n2", health_url)],
        keep_going=True,
    )

    assert [o.result for o in done.outcomes] == [Result.FAILED, Result.INSTALLED]
    assert hosts[1].version("cortex-neuron-cpu") == f"{NEW}-1"
