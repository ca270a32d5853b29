"""The packaged systemd units, sysusers files and firewalld services, as shipped in the RPMs.

``systemd-analyze verify`` runs with ``--root`` on the unpacked package, so ExecStart points
at the packaged venv script itself (no stub). The root also gets copies of this machine's
targets and slices, which the units' default dependencies name.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.rpm.conftest import PACKAGES
from tests.system_tools import tool_or_skip

UNIT = {"cortex-kernel": "cortex-kernel.service", "cortex-neuron-cpu": "cortex-neuron.service"}
UNIT["cortex-neuron-vllm"] = UNIT["cortex-neuron-cpu"]
EXEC_START = {
    "cortex-kernel.service": (
        "/usr/lib/cortex-kernel/bin/cortex-kernel serve --config /etc/cortex/cortex.toml"
    ),
    "cortex-neuron.service": (
        "/usr/lib/cortex-neuron/bin/cortex-kernel neuron --config /etc/neuron/neuron.toml"
    ),
}
# systemd-analyze security's exposure score (0 = locked down, 10 = unprotected): at most this.
EXPOSURE = {"cortex-kernel": 2.0, "cortex-neuron-cpu": 2.5, "cortex-neuron-vllm": 2.5}
HOST_UNITS = Path("/usr/lib/systemd/system")


@pytest.fixture(scope="session")
def systemd_analyze() -> str:
    return tool_or_skip("systemd-analyze", "scripts/install-system-deps installs systemd")


@pytest.fixture(scope="session")
def unit_roots(unpacked: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Unpacked packages plus the targets and slices their units depend on by default."""
    roots = {}
    for name, tree in unpacked.items():
        root = tmp_path_factory.mktemp(f"unit-root-{name}")
        shutil.copytree(tree, root, dirs_exist_ok=True, symlinks=True)
        for dependency in (*HOST_UNITS.glob("*.target"), *HOST_UNITS.glob("*.slice")):
            shutil.copy2(dependency, root / "usr/lib/systemd/system" / dependency.name, follow_symlinks=False)
        roots[name] = root
    return roots


def directives(path: Path) -> dict[str, list[str]]:
    """``{key: [values in order]}`` of a unit file (keys repeat in systemd units)."""
    found: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


@pytest.mark.parametrize("name", PACKAGES)
def test_systemd_analyze_verify_accepts_the_unit(
    systemd_analyze: str, unit_roots: dict[str, Path], name: str
) -> None:
    done = subprocess.run(
        [systemd_analyze, "verify", f"--root={unit_roots[name]}", UNIT[name]],
        capture_output=True,
        text=True,
        check=False,
    )
    # Warnings (an unknown key, a bad value) exit 0 but print: they count as failures here.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.parametrize("name", PACKAGES)
def test_exposure_score(systemd_analyze: str, unit_roots: dict[str, Path], name: str) -> None:
    done = subprocess.run(
        [
            systemd_analyze, "security", "--offline=yes", f"--root={unit_roots[name]}",
            f"--threshold={int(EXPOSURE[name] * 10)}", "--no-pager", UNIT[name],
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    score = float(done.stdout.rsplit("Overall exposure level for", 1)[1].split(":")[1].split()[0])
    assert score <= EXPOSURE[name], done.stdout
    assert done.returncode == 0, done.stdout[-2000:]


@pytest.mark.parametrize("name", PACKAGES)
def test_units_are_hardened(unpacked: dict[str, Path], name: str) -> None:
    unit = directives(unpacked[name] / "usr/lib/systemd/system" / UNIT[name])

    assert unit["ExecStart"] == [EXEC_START[UNIT[name]]]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "Restart": "on-failure",
        "CapabilityBoundingSet": "",
        "Type": "exec",
    }.items():
        assert unit[key] == [value], key
    assert unit["User"] == unit["Group"] == [unit["StateDirectory"][0].split()[0]]
    assert unit["CacheDirectory"]
    assert unit["TimeoutStopSec"]
    # With Type=exec (or simple) systemd considers the unit started at exec; a start timeout
    # would never cover model loading, so none is set (the daemons bind first instead).
    assert "TimeoutStartSec" not in unit


@pytest.mark.parametrize("name", PACKAGES)
def test_stop_signals_the_main_process_only_and_kills_leftovers(unpacked: dict[str, Path], name: str) -> None:
    """SIGTERM goes to the main process alone (the gateway's workers' supervisor, which passes it
    on and waits for their drain; the neuron, which stops its engines), and only what is still
    running when TimeoutStopSec runs out gets SIGKILL. With the default control-group mode every
    worker would get SIGTERM straight from systemd too, racing its supervisor, which could take a
    drained worker's exit for a crash and restart it."""
    unit = directives(unpacked[name] / "usr/lib/systemd/system" / UNIT[name])
    assert unit["KillSignal"] == ["SIGTERM"]
    assert unit["KillMode"] == ["mixed"]
    assert unit.get("SendSIGKILL", ["yes"]) == ["yes"]
    # Status 2 is a configuration error (in any worker of the gateway too): a restart repeats it.
    assert unit["RestartPreventExitStatus"] == ["2"]


def test_gateway_has_no_devices(unpacked: dict[str, Path]) -> None:
    unit = directives(unpacked["cortex-kernel"] / "usr/lib/systemd/system/cortex-kernel.service")
    assert unit["PrivateDevices"] == ["yes"]
    assert unit["MemoryDenyWriteExecute"] == ["yes"]


def test_vllm_neuron_may_open_nvidia_devices_only(unpacked: dict[str, Path]) -> None:
    tree = unpacked["cortex-neuron-vllm"]
    unit = directives(tree / "usr/lib/systemd/system/cortex-neuron.service")

    assert unit["DevicePolicy"] == ["closed"]
    assert unit["DeviceAllow"] and all(entry.startswith("char-nvidia") for entry in unit["DeviceAllow"])
    assert unit["SupplementaryGroups"] == ["video render"]
    assert "PrivateDevices" not in unit  # it would hide /dev/nvidia*
    assert not (tree / "usr/lib/systemd/system/cortex-neuron.service.d").exists()


def test_cpu_neuron_drops_device_access(unpacked: dict[str, Path]) -> None:
    dropin = directives(
        unpacked["cortex-neuron-cpu"] / "usr/lib/systemd/system/cortex-neuron.service.d/50-cpu-flavour.conf"
    )
    assert dropin == {"PrivateDevices": ["yes"], "DeviceAllow": [""], "SupplementaryGroups": [""]}


@pytest.mark.parametrize("name", ["cortex-neuron-cpu", "cortex-neuron-vllm"])
def test_shipped_neuron_config_keeps_weights_in_the_state_directory(
    unpacked: dict[str, Path], name: str
) -> None:
    """Downloaded weights are state: an air-gapped host cannot fetch them again after a cache wipe."""
    tree = unpacked[name]
    unit = directives(tree / "usr/lib/systemd/system/cortex-neuron.service")
    config = tomllib.loads((tree / "etc/neuron/neuron.toml").read_text())
    state = [Path("/var/lib", entry) for entry in unit["StateDirectory"][0].split()]
    cache = [Path("/var/cache", entry) for entry in unit["CacheDirectory"][0].split()]

    weights = [Path(config["cache_dir"]), *map(Path, config["model_roots"])]
    for place in weights:
        assert any(place.is_relative_to(directory) for directory in state), place
        assert not any(place.is_relative_to(directory) for directory in cache), place
    # systemd creates each of them, owned by the service account, before the neuron starts.
    assert set(weights) <= set(state)


@pytest.mark.parametrize(
    ("name", "user", "home", "groups"),
    [
        ("cortex-kernel", "cortex", "/var/lib/cortex", set()),
        ("cortex-neuron-cpu", "neuron", "/var/lib/neuron", set()),
        ("cortex-neuron-vllm", "neuron", "/var/lib/neuron", {"video", "render"}),
    ],
)
def test_sysusers_create_the_service_account(
    unpacked: dict[str, Path], tmp_path: Path, name: str, user: str, home: str, groups: set[str]
) -> None:
    if shutil.which("systemd-sysusers") is None:
        pytest.skip("needs systemd-sysusers")
    (tmp_path / "etc").mkdir()
    files = sorted((unpacked[name] / "usr/lib/sysusers.d").glob("*.conf"))

    subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", *map(str, files)], check=True, capture_output=True
    )

    passwd = {
        line.split(":")[0]: line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()
    }
    assert passwd[user][5:7] == [home, "/usr/sbin/nologin"]
    members = {
        line.split(":")[0]
        for line in (tmp_path / "etc/group").read_text().splitlines()
        if user in line.split(":")[3]
    }
    assert members == groups


@pytest.mark.parametrize(
    ("name", "service", "ports"),
    [
        ("cortex-kernel", "cortex-kernel", {"31313/tcp", "31314/tcp"}),
        ("cortex-neuron-cpu", "cortex-neuron", {"13131/tcp"}),
    ],
)
def test_firewalld_services(unpacked: dict[str, Path], name: str, service: str, ports: set[str]) -> None:
    tree = ET.parse(unpacked[name] / f"usr/lib/firewalld/services/{service}.xml").getroot()

    assert tree.tag == "service"
    assert tree.findtext("short") == service
    assert {f"{port.get('port')}/{port.get('protocol')}" for port in tree.iter("port")} == ports
