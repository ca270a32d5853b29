"""The built RPMs: file lists, metadata, config permissions, scriptlets, and lint.

``rpmlint`` runs when it is installed (Debian ships it). The essentials check below always
runs: it covers what matters most from rpmlint's list for these packages, so a host without
rpmlint still catches a leaked buildroot, a broken shebang or world-readable secrets.
"""

from __future__ import annotations

import posixpath
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.rpm.conftest import PACKAGES, REPO_ROOT, RPM_DIR, build_driver, rpm_query, vercmp

PEP440 = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]

COMMON = {
    "cortex-kernel": {
        "/usr/bin/cortex-kernel",
        "/usr/lib/cortex-kernel/bin/cortex-kernel",
        "/usr/lib/cortex-kernel/bin/python",
        "/usr/lib/cortex-kernel/pyvenv.cfg",
        "/usr/lib/systemd/system/cortex-kernel.service",
        "/usr/lib/sysusers.d/cortex-kernel.conf",
        "/usr/lib/firewalld/services/cortex-kernel.xml",
        "/etc/cortex",
        "/etc/cortex/cortex.toml",
        "/etc/cortex/models.toml",
    },
    "neuron": {
        "/usr/bin/cortex-neuron",
        "/usr/lib/cortex-neuron/bin/cortex-kernel",
        "/usr/lib/cortex-neuron/bin/python",
        "/usr/lib/cortex-neuron/pyvenv.cfg",
        "/usr/lib/systemd/system/cortex-neuron.service",
        "/usr/lib/sysusers.d/cortex-neuron.conf",
        "/usr/lib/firewalld/services/cortex-neuron.xml",
        "/etc/neuron",
        "/etc/neuron/neuron.toml",
        "/etc/neuron/models.toml",
    },
}
EXPECTED = {
    "cortex-kernel": COMMON["cortex-kernel"],
    "cortex-neuron-cpu": COMMON["neuron"]
    | {"/usr/lib/systemd/system/cortex-neuron.service.d/50-cpu-flavour.conf"},
    "cortex-neuron-vllm": COMMON["neuron"] | {"/usr/lib/sysusers.d/cortex-neuron-gpu.conf"},
}
ABSENT = {
    "cortex-kernel": set(),
    "cortex-neuron-cpu": {"/usr/lib/sysusers.d/cortex-neuron-gpu.conf"},
    "cortex-neuron-vllm": {"/usr/lib/systemd/system/cortex-neuron.service.d/50-cpu-flavour.conf"},
}
# (config dir, group, {installed file: the example it comes from})
GATEWAY_CONFIGS = {"cortex.toml": "cortex.example.toml", "models.toml": "models.example.toml"}
NEURON_CONFIGS = {"neuron.toml": "neuron.example.toml", "models.toml": "models.example.toml"}
CONFIGS = {
    "cortex-kernel": ("/etc/cortex", "cortex", GATEWAY_CONFIGS),
    "cortex-neuron-cpu": ("/etc/neuron", "neuron", NEURON_CONFIGS),
    "cortex-neuron-vllm": ("/etc/neuron", "neuron", NEURON_CONFIGS),
}
APPDIR = {"cortex-kernel": "/usr/lib/cortex-kernel", "cortex-neuron-cpu": "/usr/lib/cortex-neuron"}
APPDIR["cortex-neuron-vllm"] = APPDIR["cortex-neuron-cpu"]


def file_table(rpm: Path) -> dict[str, tuple[str, str, str, str, str]]:
    """``{path: (flags, perms, user, group, link target)}`` for every file in the package."""
    fields = (
        "FILENAMES",
        "FILEFLAGS:fflags",
        "FILEMODES:perms",
        "FILEUSERNAME",
        "FILEGROUPNAME",
        "FILELINKTOS",
    )
    out = rpm_query(rpm, "--qf", "[" + "\t".join(f"%{{{field}}}" for field in fields) + "\n]")
    table = {}
    for line in out.splitlines():
        path, flags, perms, user, group, link = line.split("\t")
        table[path] = (flags, perms, user, group, link)
    return table


@pytest.mark.parametrize("name", PACKAGES)
def test_file_list(built_rpms: dict[str, Path], name: str) -> None:
    listed = set(rpm_query(built_rpms[name], "-l").split())

    assert EXPECTED[name] <= listed
    assert not ABSENT[name] & listed
    site = f"{APPDIR[name]}/lib/python"
    assert any(path.startswith(site) and path.endswith("/cortex_kernel/cli/__init__.py") for path in listed)
    assert any("/cortex_deploy/__pycache__/" in path and path.endswith(".pyc") for path in listed)
    assert any(path.startswith("/usr/share/licenses/") and path.endswith("/LICENSE") for path in listed)
    allowed = ("/etc/", "/usr/bin/", f"{APPDIR[name]}", "/usr/lib/systemd/system/", "/usr/lib/sysusers.d/",
               "/usr/lib/firewalld/services/", "/usr/share/licenses/")  # fmt: skip
    assert [path for path in listed if not path.startswith(allowed)] == []
    assert not [path for path in listed if "/pip/" in path or "/setuptools/" in path]  # seeded, then removed


@pytest.mark.parametrize("name", PACKAGES)
def test_configs_are_noreplace_and_kept_from_other_users(
    built_rpms: dict[str, Path], unpacked: dict[str, Path], name: str
) -> None:
    directory, group, files = CONFIGS[name]
    table = file_table(built_rpms[name])

    assert table[directory][1:4] == ("drwxr-x---", "root", group)
    for installed, example in files.items():
        flags, perms, user, owner_group, _ = table[f"{directory}/{installed}"]
        assert "c" in flags and "n" in flags  # %config(noreplace): local edits survive upgrades
        assert (perms, user, owner_group) == ("-rw-r-----", "root", group)
        shipped = unpacked[name] / directory.lstrip("/") / installed
        assert shipped.read_text() == (REPO_ROOT / example).read_text()


@pytest.mark.parametrize("name", PACKAGES)
def test_version_is_the_pep440_version_spelled_for_rpm(built_rpms: dict[str, Path], name: str) -> None:
    version, release = rpm_query(built_rpms[name], "--qf", "%{VERSION} %{RELEASE}").split()

    assert version == build_driver().rpm_version(PEP440)
    assert release.split(".")[0] == "1"
    final_match = re.match(r"\d+(\.\d+)*", PEP440)
    assert final_match is not None
    final = final_match.group(0)
    if final != PEP440:  # a pre-release must sort before the release it leads to
        assert vercmp(version, final) == -1


def test_dependencies_and_conflicts(built_rpms: dict[str, Path]) -> None:
    requires = {name: rpm_query(rpm, "--requires") for name, rpm in built_rpms.items()}
    provides = {name: rpm_query(rpm, "--provides") for name, rpm in built_rpms.items()}

    for text in requires.values():
        assert re.search(r"^python\(abi\) = 3\.\d+$", text, re.MULTILINE)
        assert "systemd" in text.split()
        assert not re.search(r"\.so", text)  # nothing from the private venv leaks into the deps
    assert "user(cortex)" in provides["cortex-kernel"]
    for flavour, other in (("cpu", "vllm"), ("vllm", "cpu")):
        rpm = built_rpms[f"cortex-neuron-{flavour}"]
        assert rpm_query(rpm, "--conflicts").split() == [f"cortex-neuron-{other}"]
        assert "cortex-neuron = 0.1.0" in provides[f"cortex-neuron-{flavour}"]
        assert "user(neuron)" in provides[f"cortex-neuron-{flavour}"]
    assert not [line for text in provides.values() for line in text.splitlines() if ".so" in line]


def test_scriptlets_create_the_account_and_hook_systemd(built_rpms: dict[str, Path]) -> None:
    gateway = rpm_query(built_rpms["cortex-kernel"], "--scripts")
    assert "useradd -r -g cortex -d /var/lib/cortex" in gateway or "systemd-sysusers" in gateway
    assert "cortex-kernel.service" in gateway
    vllm = rpm_query(built_rpms["cortex-neuron-vllm"], "--scripts")
    cpu = rpm_query(built_rpms["cortex-neuron-cpu"], "--scripts")
    assert "render" in vllm and "render" not in cpu
    assert "try-restart cortex-neuron.service" in cpu or "systemd-update-helper" in cpu


@pytest.mark.parametrize("name", PACKAGES)
def test_venv_is_relocated_and_reports_the_pep440_version(
    built_rpms: dict[str, Path], unpacked: dict[str, Path], name: str
) -> None:
    tree = unpacked[name]
    appdir = tree / APPDIR[name].lstrip("/")
    assert (appdir / "bin" / "cortex-kernel").read_text().splitlines()[0] == f"#!{APPDIR[name]}/bin/python"
    for line in (appdir / "pyvenv.cfg").read_text().splitlines():
        if line.startswith("command"):
            assert line.endswith(f" {APPDIR[name]}")

    version = subprocess.run(
        [
            str(appdir / "bin" / "python"),
            "-c",
            "from cortex_kernel._version import package_version as v; print(v())",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    assert version == PEP440  # `cortex-kernel --version` tells the pre-release apart


@pytest.mark.parametrize("name", PACKAGES)
def test_packaging_essentials(built_rpms: dict[str, Path], unpacked: dict[str, Path], name: str) -> None:
    """What rpmlint would flag first, checked without rpmlint."""
    rpm = built_rpms[name]
    tree = unpacked[name]
    table = file_table(rpm)
    problems = []
    for path, (_, perms, user, group, link) in table.items():
        if perms[8] == "w" and not perms.startswith("l"):
            problems.append(f"world-writable: {path}")
        if perms[3] in "sS" or perms[6] in "sS":
            problems.append(f"setuid/setgid: {path}")
        if user != "root" or (group != "root" and not path.startswith(("/etc/cortex", "/etc/neuron"))):
            problems.append(f"owner {user}:{group}: {path}")
        if link and path.startswith("/usr/bin/"):
            target = posixpath.normpath(posixpath.join(posixpath.dirname(path), link))
            if target not in table:
                problems.append(f"/usr/bin link leads outside the package: {path} -> {link}")
    for text_file in tree.rglob("*"):
        if text_file.is_file() and not text_file.is_symlink() and text_file.suffix != ".pyc":
            data = text_file.read_bytes()
            if b"BUILDROOT" in data or b"rpmbuild-" in data:
                problems.append(f"mentions the build tree: {text_file.relative_to(tree)}")
    info = rpm_query(rpm, "--qf", "%{SUMMARY}\n%{DESCRIPTION}\n")
    summary, description = info.split("\n", 1)
    if summary.endswith(".") or len(summary) > 80:
        problems.append(f"summary: {summary!r}")
    problems += [f"description line over 79: {line!r}" for line in description.splitlines() if len(line) > 79]
    changelog = rpm_query(rpm, "--changelog").splitlines()[0]
    version, release = rpm_query(rpm, "--qf", "%{VERSION} %{RELEASE}").split()
    if not changelog.endswith(f" - {version}-{release.split('.')[0]}"):  # the %{dist} suffix aside
        problems.append(f"changelog names another version: {changelog!r}")
    data_dirs = ("/usr/lib/systemd/", "/usr/lib/sysusers.d/", "/usr/lib/firewalld/")
    for path, (_, perms, _, _, _) in table.items():
        if path.startswith(data_dirs) and perms[0] == "-" and perms != "-rw-r--r--":
            problems.append(f"mode {perms}: {path}")
    assert problems == []


def test_rpmlint(built_rpms: dict[str, Path]) -> None:
    if shutil.which("rpmlint") is None:
        pytest.skip("rpmlint is not installed (apt-get install rpmlint); test_packaging_essentials still ran")
    done = subprocess.run(
        ["rpmlint", "-c", str(RPM_DIR / "rpmlint.toml"), *map(str, built_rpms.values())],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 errors, 0 warnings" in done.stdout


def test_unknown_flavour_is_refused() -> None:
    if shutil.which("rpmspec") is None:
        pytest.skip("needs rpmspec (part of rpm)")
    done = subprocess.run(
        ["rpmspec", "-q", "--define", "flavour rocm", str(RPM_DIR / "cortex-neuron.spec")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "unknown neuron flavour 'rocm'" in done.stderr
