"""Fixtures for deploy tests: real packages, a real repository and throwaway host roots.

A "host" here is a directory used as rpm's ``--root`` and dnf's ``--installroot``, reached
through LocalTransport; systemctl on it is a RecordingSystemctl. The packages are tiny
stand-ins named like the real ones, built once per session in two versions (a pre-release
and its release), and published per test into a file:// repository by createrepo_c.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cortex_deploy.host import Clock
from cortex_deploy.local import LocalTransport
from cortex_deploy.manifest import load_manifest
from cortex_deploy.rollout import Outcome, roll_fleet
from tests.deploy.doubles import RecordingSystemctl

DATA = Path(__file__).parent / "data"
OLD, NEW = "0.1.0~a1", "0.1.0"
STAND_INS = {
    # package: (unit, config directory)
    "cortex-kernel": ("cortex-kernel.service", "cortex"),
    "cortex-neuron-cpu": ("cortex-neuron.service", "neuron"),
}
REPO_ID = "cortex-test"
# dnf's "local" plugin (enabled by Debian's dnf-plugins-core) copies every installed package
# into a repository of its own on the *host*; it has no business in a throwaway root.
DNF_OPTIONS = ("--disableplugin=local",)
TOOLS = ("rpm", "rpmbuild", "dnf", "createrepo_c", "curl")


@pytest.fixture(scope="session")
def rpm_toolchain() -> None:
    """Skip unless rpm, dnf (with config-manager), createrepo_c and root are all here."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (scripts/install-system-deps installs them)")
    if os.geteuid() != 0:
        pytest.skip("dnf transactions in an --installroot need root")
    probe = subprocess.run(["dnf", "config-manager", "--help"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("needs dnf's config-manager plugin (dnf-plugins-core)")


@pytest.fixture(scope="session")
def stand_in_rpms(
    rpm_toolchain: None, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], Path]:
    """``{(package, version): rpm file}`` for both stand-ins in both versions."""
    topdir = tmp_path_factory.mktemp("stand-ins")
    built = {}
    for package, (unit, confdir) in STAND_INS.items():
        for version in (OLD, NEW):
            subprocess.run(
                [
                    "rpmbuild", "-bb", "--quiet", "--nodeps",
                    "--define", f"_topdir {topdir}",
                    "--define", f"pkgname {package}",
                    "--define", f"pkgversion {version}",
                    "--define", f"unit {unit}",
                    "--define", f"confdir {confdir}",
                    str(DATA / "testpkg.spec"),
                ],
                check=True,
                capture_output=True,
            )  # fmt: skip
            built[(package, version)] = topdir / "RPMS" / "noarch" / f"{package}-{version}-1.noarch.rpm"
    return built


@dataclass
class PackageRepo:
    """A file:// repository and the ``.repo`` file that points at it (shipped disabled)."""

    directory: Path
    repo_file: Path
    rpms: dict[tuple[str, str], Path]

    @property
    def url(self) -> str:
        """The repo file's URL, as the manifest names it."""
        return self.repo_file.as_uri()

    def publish(self, *packages: tuple[str, str]) -> None:
        """Add these (package, version) builds and regenerate the metadata."""
        for key in packages:
            shutil.copy2(self.rpms[key], self.directory)
        subprocess.run(["createrepo_c", "-q", str(self.directory)], check=True)

    def repo_text(self, *, enabled: bool, baseurl: str | None = None) -> str:
        """The repo file's content."""
        return (
            f"[{REPO_ID}]\nname=cortex-kernel test packages\nbaseurl={baseurl or self.directory.as_uri()}\n"
            f"enabled={int(enabled)}\ngpgcheck=0\n"
        )


@pytest.fixture
def package_repo(stand_in_rpms: dict[tuple[str, str], Path], tmp_path: Path) -> PackageRepo:
    """An empty repository; tests publish what their scenario needs."""
    directory = tmp_path / "repo"
    directory.mkdir()
    repo = PackageRepo(directory, tmp_path / f"{REPO_ID}.repo", stand_in_rpms)
    repo.repo_file.write_text(repo.repo_text(enabled=False))
    subprocess.run(["createrepo_c", "-q", str(directory)], check=True)
    return repo


@dataclass
class FakeHost:
    """One host: a throwaway root reached through LocalTransport, systemctl recorded."""

    name: str
    root: Path
    systemctl: RecordingSystemctl = field(default_factory=RecordingSystemctl)

    @property
    def transport(self) -> LocalTransport:
        """How the rollout reaches this host."""
        return LocalTransport(
            host=self.name,
            root=self.root,
            releasever="test",
            dnf_options=DNF_OPTIONS,
            programs={"systemctl": self.systemctl},
        )

    def preinstall(self, rpm: Path) -> None:
        """Install a package directly with rpm, as an earlier rollout would have."""
        subprocess.run(["rpm", "--root", str(self.root), "-i", "--nodeps", str(rpm)], check=True)

    def add_repo(self, repo: PackageRepo, *, enabled: bool, baseurl: str | None = None) -> Path:
        """Put the repo file in place, as dnf config-manager would have."""
        path = self.root / "etc/yum.repos.d" / repo.repo_file.name
        path.write_text(repo.repo_text(enabled=enabled, baseurl=baseurl))
        return path

    def version(self, package: str) -> str | None:
        """The installed version-release, or None."""
        result = subprocess.run(
            ["rpm", "--root", str(self.root), "-q", "--qf", "%{version}-%{release}", package],
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout if result.returncode == 0 else None


@pytest.fixture
def make_host(rpm_toolchain: None, tmp_path: Path) -> Callable[[str], FakeHost]:
    """Make empty hosts: a root with a dnf.conf and a repo directory, and nothing installed.

    dnf reads dnf.conf and the repo directory from inside the installroot when they exist
    there, so the host machine's own configuration never leaks in.
    """

    def make(name: str) -> FakeHost:
        root = tmp_path / "hosts" / name
        (root / "etc/yum.repos.d").mkdir(parents=True)
        (root / "etc/dnf").mkdir(parents=True)
        (root / "etc/dnf/dnf.conf").write_text(
            "[main]\ngpgcheck=1\nskip_if_unavailable=False\ninstall_weak_deps=False\nkeepcache=False\n"
        )
        return FakeHost(name, root)

    return make


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_url() -> Iterator[str]:
    """A /health that answers 200, standing in for a daemon that came up."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/health"
    server.shutdown()
    server.server_close()


@pytest.fixture
def dead_health_url() -> str:
    """A /health nobody answers: a loopback port that was free a moment ago."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/health"


def toml_manifest(
    repo: PackageRepo, gateways: list[dict[str, object]], neurons: list[dict[str, object]]
) -> str:
    """Render a manifest for these hosts (values are str, float or a list of file tables)."""

    def value(item: object) -> str:
        return f'"{item}"' if isinstance(item, str) else repr(item)

    lines = ["[repo]", f'id = "{REPO_ID}"', f'url = "{repo.url}"', ""]
    for table, hosts in (("gateways", gateways), ("neurons", neurons)):
        for host in hosts:
            lines.append(f"[[{table}]]")
            files = host.get("files", [])
            lines += [f"{key} = {value(item)}" for key, item in host.items() if key != "files"]
            for entry in files:  # type: ignore[attr-defined]
                lines.append(f"[[{table}.files]]")
                lines += [f"{key} = {value(item)}" for key, item in entry.items()]
            lines.append("")
    return "\n".join(lines)


@dataclass
class Rollout:
    """What a rollout did: the outcomes and every line it printed."""

    outcomes: list[Outcome]
    lines: list[str]

    @property
    def text(self) -> str:
        """All printed lines."""
        return "\n".join(self.lines)

    def outcome(self, host: str) -> Outcome:
        """The outcome of the (single) target on ``host``."""
        (found,) = [outcome for outcome in self.outcomes if outcome.host == host]
        return found


@pytest.fixture
def roll(tmp_path: Path) -> Callable[..., Rollout]:
    """Write a manifest and roll it over FakeHosts: ``roll(repo, hosts, gateways=, neurons=)``."""

    def run(
        repo: PackageRepo,
        hosts: list[FakeHost],
        *,
        gateways: list[dict[str, object]] = (),  # type: ignore[assignment]
        neurons: list[dict[str, object]] = (),  # type: ignore[assignment]
        keep_going: bool = False,
    ) -> Rollout:
        path = tmp_path / "fleet.toml"
        path.write_text(toml_manifest(repo, list(gateways), list(neurons)))
        by_name = {host.name: host.transport for host in hosts}
        lines: list[str] = []
        outcomes = roll_fleet(
            load_manifest(path), by_name.__getitem__, lines.append, keep_going=keep_going, clock=Clock()
        )
        return Rollout(outcomes, lines)

    return run
