"""The fleet manifest (``fleet.toml``): which hosts run what, and which files they get.

Read with the same strictness as the daemons' configs: unknown keys are errors, and every
error names the file, the key and the line. The manifest is turned into a flat list of
:class:`Target`\\ s (gateways first, then neurons in file order), which is all the rollout sees.
See ``fleet.example.toml`` and docs/deploy.md for every key.
"""

from __future__ import annotations

import posixpath
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

from cortex_kernel.config.errors import ConfigError
from cortex_kernel.config.locate import locate_line
from cortex_kernel.validation import error_location

Name = Annotated[str, msgspec.Meta(pattern=r"^([a-z_][a-z0-9_.-]*|[0-9]+)$")]
Mode = Annotated[str, msgspec.Meta(pattern=r"^0?[0-7]{3,4}$")]
AbsolutePath = Annotated[str, msgspec.Meta(pattern=r"^/")]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]

GATEWAY_PACKAGE = "cortex-kernel"
GATEWAY_UNIT = "cortex-kernel.service"
GATEWAY_HEALTH = "http://127.0.0.1:31313/health"
NEURON_PACKAGE_PREFIX = "cortex-neuron-"
NEURON_UNIT = "cortex-neuron.service"
NEURON_HEALTH = "http://127.0.0.1:13131/health"


class _Table(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A manifest table: unknown keys are typos, and typos in a deploy are expensive."""


class FileEntry(_Table):
    """One config file to keep in sync: ``source`` is relative to the manifest."""

    source: str
    destination: AbsolutePath
    owner: Name = "root"
    group: Name = "root"
    mode: Mode = "0644"


class RepoTable(_Table):
    """The package repository every host must have, enabled."""

    id: str
    url: str
    file: str | None = None


class SshTable(_Table):
    """How hosts are reached."""

    user: str | None = None
    port: int | None = None
    sudo: bool = True
    options: list[str] = msgspec.field(default_factory=list)


class GatewayTable(_Table):
    """A host running the gateway package."""

    host: str
    package: str = GATEWAY_PACKAGE
    unit: str = GATEWAY_UNIT
    health_url: str = GATEWAY_HEALTH
    health_timeout_s: PositiveFloat = 120.0
    files: list[FileEntry] = msgspec.field(default_factory=list)


class NeuronTable(_Table):
    """A host running one flavour of the neuron package."""

    host: str
    flavour: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    package: str | None = None
    unit: str = NEURON_UNIT
    health_url: str = NEURON_HEALTH
    health_timeout_s: PositiveFloat = 300.0
    files: list[FileEntry] = msgspec.field(default_factory=list)


class ManifestFile(_Table):
    """The whole manifest as written."""

    repo: RepoTable
    ssh: SshTable = msgspec.field(default_factory=SshTable)
    gateways: list[GatewayTable] = msgspec.field(default_factory=list)
    neurons: list[NeuronTable] = msgspec.field(default_factory=list)


@dataclass(frozen=True)
class SyncFile:
    """A config file to place on a host, its local source already resolved."""

    source: Path
    destination: str
    owner: str
    group: str
    mode: int

    @property
    def describe(self) -> str:
        """``/etc/cortex/cortex.toml (root:cortex 0640)``, for messages."""
        return f"{self.destination} ({self.owner}:{self.group} {self.mode:04o})"


@dataclass(frozen=True)
class Repo:
    """The repository to ensure: its id, the URL of its ``.repo`` file, the file's name."""

    id: str
    url: str
    file_name: str

    @property
    def path(self) -> str:
        """Where dnf's config-manager saves the downloaded repo file."""
        return f"/etc/yum.repos.d/{self.file_name}"


@dataclass(frozen=True)
class Target:
    """One package on one host: the unit of a rollout."""

    host: str
    role: Literal["gateway", "neuron"]
    package: str
    unit: str
    health_url: str
    health_timeout_s: float
    files: tuple[SyncFile, ...] = ()


@dataclass(frozen=True)
class Manifest:
    """What the rollout needs: the repo, how to reach hosts, and the targets in order."""

    path: Path
    repo: Repo
    ssh: SshTable
    targets: tuple[Target, ...]


def load_manifest(path: Path) -> Manifest:
    """Read, validate and resolve a manifest; raise :class:`ConfigError` naming the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read manifest: {exc.strerror}", source=path) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message, _, position = str(exc).partition(" (at line ")
        line = int(position.split(",", 1)[0]) if position[:1].isdigit() else None
        raise ConfigError(f"invalid TOML: {message}", source=path, line=line) from exc
    try:
        raw = msgspec.convert(data, ManifestFile)
    except msgspec.ValidationError as exc:
        where = error_location(exc)
        problem = "unknown key" if where.unknown_field else where.problem
        key = (where.key if where.unknown_field else where.path) or None
        raise ConfigError(
            problem, source=path, key=key, line=locate_line(text, key) if key else None
        ) from exc
    return _resolve(path, text, raw)


def _resolve(path: Path, text: str, raw: ManifestFile) -> Manifest:
    def fail(problem: str, key: str) -> ConfigError:
        return ConfigError(problem, source=path, key=key, line=locate_line(text, key))

    if not raw.gateways and not raw.neurons:
        raise fail("names no hosts", "gateways")
    base = path.parent

    def files(entries: list[FileEntry], prefix: str) -> tuple[SyncFile, ...]:
        resolved = []
        for index, entry in enumerate(entries):
            source = (base / entry.source).resolve()
            if not source.is_file():
                raise fail(
                    f"{entry.source} is not a file (paths are relative to the manifest)",
                    f"{prefix}.files[{index}].source",
                )
            mode = int(entry.mode, 8)
            if mode & 0o7000:
                raise fail("setuid, setgid and sticky bits are not allowed", f"{prefix}.files[{index}].mode")
            resolved.append(SyncFile(source, entry.destination, entry.owner, entry.group, mode))
        return tuple(resolved)

    targets: list[Target] = []
    for index, gateway in enumerate(raw.gateways):
        key = f"gateways[{index}]"
        targets.append(
            Target(
                host=gateway.host,
                role="gateway",
                package=gateway.package,
                unit=gateway.unit,
                health_url=gateway.health_url,
                health_timeout_s=gateway.health_timeout_s,
                files=files(gateway.files, key),
            )
        )
    seen: set[str] = set()
    for index, neuron in enumerate(raw.neurons):
        key = f"neurons[{index}]"
        if neuron.host in seen:
            raise fail(f"{neuron.host} is listed twice (a host runs one neuron)", f"{key}.host")
        seen.add(neuron.host)
        targets.append(
            Target(
                host=neuron.host,
                role="neuron",
                package=neuron.package or f"{NEURON_PACKAGE_PREFIX}{neuron.flavour}",
                unit=neuron.unit,
                health_url=neuron.health_url,
                health_timeout_s=neuron.health_timeout_s,
                files=files(neuron.files, key),
            )
        )
    file_name = raw.repo.file or posixpath.basename(urlsplit(raw.repo.url).path)
    if not file_name.endswith(".repo") or "/" in file_name:
        raise fail(
            "name the .repo file (the URL does not end in one)", "repo.file" if raw.repo.file else "repo.url"
        )
    return Manifest(path, Repo(raw.repo.id, raw.repo.url, file_name), raw.ssh, tuple(targets))
