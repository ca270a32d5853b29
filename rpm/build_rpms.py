#!/usr/bin/env python3
"""Build the cortex-kernel RPMs: the gateway and the neuron in its cpu and vllm flavours.

Why a driver and not bare ``rpmbuild``: the specs install wheels, not a source tree, so
something has to build the project wheel, resolve and download the dependency wheelhouse (the
only step that needs the network), stage the unit files and example configs as sources, and
turn the PEP 440 version of ``pyproject.toml`` into one rpm sorts the same way. This script
does exactly that and then runs ``rpmbuild -bb``. It needs only the standard library.

Examples::

    python3 rpm/build_rpms.py                          # all three packages, dependencies vendored
    python3 rpm/build_rpms.py --package gateway --outdir dist/rpm
    python3 rpm/build_rpms.py --without-vendor         # light packaging check, no network

See docs/packaging.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

RPM_DIR = Path(__file__).resolve().parent
REPO_ROOT = RPM_DIR.parent

_PEP440 = re.compile(
    r"(?:(?P<epoch>\d+)!)?(?P<release>\d+(?:\.\d+)*)"
    r"(?:(?P<pre_l>a|b|rc)(?P<pre_n>\d+))?"
    r"(?:\.post(?P<post>\d+))?"
    r"(?:\.dev(?P<dev>\d+))?"
    r"(?:\+(?P<local>[a-z0-9]+(?:\.[a-z0-9]+)*))?"
)


def rpm_version(pep440: str) -> str:
    """Spell a normalised PEP 440 version so that rpm orders it as PEP 440 does.

    rpm sorts ``~`` before anything (even the end of the string) and ``^`` after the end but
    before any further segment. So a pre-release ``0.1.0a1`` becomes ``0.1.0~a1`` (before
    ``0.1.0``), a post-release ``0.1.0.post1`` becomes ``0.1.0^post1`` and a development
    release ``0.1.0.dev2`` becomes ``0.1.0~~dev2`` (before ``0.1.0~a1``, as in PEP 440), or
    ``~dev2`` when it follows a pre- or post-release marker. Epochs and local versions have no
    place in a package built from pyproject.toml and are refused.
    """
    match = _PEP440.fullmatch(pep440)
    if match is None:
        raise ValueError(f"{pep440!r} is not a normalised PEP 440 version")
    if match["epoch"] or match["local"]:
        raise ValueError(f"{pep440!r}: epochs and local versions cannot be packaged")
    version = match["release"]
    if match["pre_l"]:
        version += f"~{match['pre_l']}{match['pre_n']}"
    if match["post"]:
        version += f"^post{match['post']}"
    if match["dev"]:
        attached = match["pre_l"] or match["post"]
        version += f"{'~' if attached else '~~'}dev{match['dev']}"
    return version


@dataclass(frozen=True)
class Package:
    """One binary package: its spec, defines, and what its wheelhouse must hold."""

    key: str
    spec: str
    defines: tuple[tuple[str, str], ...] = ()
    extras: str = ""
    requirements: tuple[str, ...] = ()
    pip_args: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()


COMMON_SOURCES = ("install-venv.sh",)
PACKAGES: dict[str, Package] = {
    "gateway": Package(
        key="gateway",
        spec="cortex-kernel.spec",
        sources=("cortex-kernel.service", "cortex-kernel.sysusers", "cortex-kernel.firewalld.xml"),
    ),
    "neuron-cpu": Package(
        key="neuron-cpu",
        spec="cortex-neuron.spec",
        defines=(("flavour", "cpu"),),
        extras="[transformers]",
        # torch's own index serves the CPU-only build; PyPI's torch pulls in CUDA.
        pip_args=("--extra-index-url", "https://download.pytorch.org/whl/cpu"),
        sources=(
            "cortex-neuron.service",
            "cortex-neuron-cpu.conf",
            "cortex-neuron.sysusers",
            "cortex-neuron-gpu.sysusers",
            "cortex-neuron.firewalld.xml",
        ),
    ),
    "neuron-vllm": Package(
        key="neuron-vllm",
        spec="cortex-neuron.spec",
        defines=(("flavour", "vllm"),),
        requirements=("vllm", "nvidia-ml-py"),
        sources=(
            "cortex-neuron.service",
            "cortex-neuron-cpu.conf",
            "cortex-neuron.sysusers",
            "cortex-neuron-gpu.sysusers",
            "cortex-neuron.firewalld.xml",
        ),
    ),
}
EXAMPLE_CONFIGS = ("cortex.example.toml", "neuron.example.toml", "models.example.toml")


def project_version(root: Path = REPO_ROOT) -> str:
    """The PEP 440 version in pyproject.toml, the single source of the package version."""
    with (root / "pyproject.toml").open("rb") as handle:
        return str(tomllib.load(handle)["project"]["version"])


def _run(argv: Sequence[str | Path], *, quiet: bool = False) -> None:
    print("+", " ".join(str(arg) for arg in argv), file=sys.stderr, flush=True)
    subprocess.run([str(arg) for arg in argv], check=True, stdout=subprocess.DEVNULL if quiet else None)


def build_wheel(workdir: Path) -> Path:
    """Build the (pure-Python) project wheel, offline when the build backend is importable here."""
    dist = workdir / "wheel"
    shutil.rmtree(dist, ignore_errors=True)
    offline = ["--no-build-isolation"] if importlib.util.find_spec("hatchling") else []
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *offline, "-w", dist, REPO_ROOT], quiet=True)
    (wheel,) = dist.glob("cortex_kernel-*.whl")
    return wheel


def build_wheelhouse(
    python: str, wheel: Path, package: Package, workdir: Path, extra_pip: Sequence[str]
) -> Path:
    """Resolve and download every dependency wheel of one package (needs the network).

    The wheelhouse is resolved with the target interpreter, so compiled wheels match the ABI
    the package will run with; the spec installs exactly these wheels and nothing else.
    """
    wheelhouse = workdir / f"wheelhouse-{package.key}"
    shutil.rmtree(wheelhouse, ignore_errors=True)
    _run(
        [
            python,
            "-m",
            "pip",
            "wheel",
            "--wheel-dir",
            wheelhouse,
            *package.pip_args,
            *extra_pip,
            f"{wheel}{package.extras}",
            *package.requirements,
        ]
    )
    for own in wheelhouse.glob("cortex_kernel-*.whl"):
        own.unlink()
    return wheelhouse


def pack_wheelhouse(wheelhouse: Path, destination: Path) -> None:
    """Tar the wheelhouse flat and in a stable order, so rebuilding gives the same source."""
    with tarfile.open(destination, "w:gz") as archive:
        for wheel in sorted(wheelhouse.glob("*.whl")):
            archive.add(wheel, arcname=wheel.name)


def missing_rpm_macros() -> bool:
    """True on build hosts without the systemd rpm macros (Debian's rpm, for example)."""
    result = subprocess.run(["rpm", "--eval", "%{?_unitdir}"], capture_output=True, text=True, check=True)
    return not result.stdout.strip()


def host_has_rpmdb() -> bool:
    """True when rpm manages this host, so BuildRequires can be checked against its database."""
    return subprocess.run(["rpm", "-q", "rpm"], capture_output=True, check=False).returncode == 0


def stage_sources(package: Package, wheel: Path, examples_dir: Path, sourcedir: Path) -> None:
    """Copy everything the spec names as a source into rpmbuild's source directory."""
    sourcedir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(wheel, sourcedir / wheel.name)
    for name in (*COMMON_SOURCES, *package.sources):
        shutil.copy2(RPM_DIR / name, sourcedir / name)
    for name in EXAMPLE_CONFIGS:
        if not (examples_dir / name).is_file():
            raise SystemExit(
                f"build_rpms: {examples_dir / name} is missing (the example configs are packaged)"
            )
        shutil.copy2(examples_dir / name, sourcedir / name)
    shutil.copy2(REPO_ROOT / "LICENSE", sourcedir / "LICENSE")


def rpmbuild_argv(
    package: Package, *, pep440: str, release: str, vendor: bool, python: str, topdir: Path, outdir: Path
) -> list[str]:
    """The rpmbuild command line for one package."""
    defines = {
        "_topdir": str(topdir),
        "_sourcedir": str(topdir / "SOURCES"),
        "_rpmdir": str(outdir),
        "pep440_version": pep440,
        "rpm_version": rpm_version(pep440),
        "release_number": release,
        "__python3": python,
        **dict(package.defines),
    }
    argv = ["rpmbuild", "-bb", "--quiet"]
    if missing_rpm_macros():
        argv += ["--load", str(RPM_DIR / "fallback.macros")]
    if not host_has_rpmdb():
        argv.append("--nodeps")
    if not vendor:
        argv += ["--without", "vendor"]
    for name, value in defines.items():
        argv += ["--define", f"{name} {value}"]
    argv.append(str(RPM_DIR / package.spec))
    return argv


def build(args: argparse.Namespace) -> list[Path]:
    """Build the requested packages; return the RPM files written."""
    workdir: Path = args.workdir.resolve()
    outdir: Path = args.outdir.resolve()
    python: str = args.python
    pep440 = project_version()
    wheel = args.wheel.resolve() if args.wheel else build_wheel(workdir)
    built: list[Path] = []
    for key in args.package or list(PACKAGES):
        package = PACKAGES[key]
        topdir = workdir / f"rpmbuild-{key}"
        shutil.rmtree(topdir, ignore_errors=True)
        stage_sources(package, wheel, args.examples_dir.resolve(), topdir / "SOURCES")
        if args.vendor:
            if args.wheelhouse_dir:
                wheelhouse = args.wheelhouse_dir.resolve() / key
            else:
                wheelhouse = build_wheelhouse(python, wheel, package, workdir, args.pip_arg)
            tarball = topdir / "SOURCES" / f"cortex-kernel-wheelhouse-{pep440}-{key}.tar.gz"
            pack_wheelhouse(wheelhouse, tarball)
        argv = rpmbuild_argv(
            package,
            pep440=pep440,
            release=args.release,
            vendor=args.vendor,
            python=python,
            topdir=topdir,
            outdir=topdir / "RPMS",
        )
        _run(argv)
        for rpm in sorted((topdir / "RPMS").rglob("*.rpm")):
            destination = outdir / rpm.parent.name / rpm.name
            destination.parent.mkdir(parents=True, exist_ok=True)
            built.append(rpm.replace(destination))
    return built


def default_python() -> str:
    """The interpreter the packages will run on: rpm's %__python3, else /usr/bin/python3."""
    result = subprocess.run(["rpm", "--eval", "%{?__python3}"], capture_output=True, text=True, check=False)
    return result.stdout.strip() or "/usr/bin/python3"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; every path defaults to a place under the repository."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--package", action="append", choices=sorted(PACKAGES), help="repeatable; default: all"
    )
    parser.add_argument(
        "--without-vendor",
        dest="vendor",
        action="store_false",
        help="leave the dependencies out (light packaging check; the packages do not run)",
    )
    parser.add_argument("--wheel", type=Path, help="use this cortex-kernel wheel instead of building one")
    parser.add_argument(
        "--wheelhouse-dir",
        type=Path,
        help="prepared wheelhouses, one folder per package key (offline builds)",
    )
    parser.add_argument("--pip-arg", action="append", default=[], help="extra argument for 'pip wheel'")
    parser.add_argument("--python", default=None, help="target interpreter (default: rpm's %%__python3)")
    parser.add_argument("--release", default="1", help="rpm Release number (default 1)")
    parser.add_argument("--examples-dir", type=Path, default=REPO_ROOT, help="where *.example.toml live")
    parser.add_argument("--workdir", type=Path, default=RPM_DIR / "_build", help="scratch directory")
    parser.add_argument("--outdir", type=Path, default=RPM_DIR / "_build" / "RPMS", help="where RPMs go")
    args = parser.parse_args(argv)
    if args.python is None:
        args.python = default_python()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Build and list the RPMs."""
    for path in build(parse_args(argv)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
