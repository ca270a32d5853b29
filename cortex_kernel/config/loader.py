"""The one configuration loader: defaults < file < environment < command-line flags.

Search order for the file when no ``--config`` is given (first hit wins):

1. the platformdirs *user* config dir (``~/.config/cortex/`` on Linux),
2. the platformdirs *site* config dir (``/etc/xdg/cortex/``),
3. ``/etc/cortex/`` (and ``/etc/neuron/`` for ``neuron.toml``, where the RPM installs it).

Environment variables override file values: ``CORTEX_SECTION__KEY`` for ``cortex.toml`` and
``NEURON_SECTION__KEY`` for ``neuron.toml`` (``__`` separates levels; values are read as TOML
literals, falling back to plain strings). Only variables whose first segment names a top-level
key are read, so unrelated ``CORTEX_*`` variables are left alone; a variable with a ``__`` whose
first segment is no kernel key may name a plugin's table (``CORTEX_ACME__KEY``), so it is kept with
the plugin tables (:mod:`cortex_kernel.config.tables`) and used only if a plugin claims that table.

Tables the kernel's schema does not declare are kept raw, with the source of every key, in
:attr:`LoadedConfig.tables`; the plugins that own them validate them once they are loaded.

``models.toml`` is found through ``models_config`` resolved against the directory of the file
that names it, else next to that file, and never relative to the working directory.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import msgspec
import platformdirs

from cortex_kernel.config.addresses import ENDPOINT_FORM, LISTEN_FORM, check_endpoint, parse_listen
from cortex_kernel.config.errors import ConfigError
from cortex_kernel.config.locate import locate_line
from cortex_kernel.config.schema import (
    ROOT_TYPES,
    Catalogue,
    ConfigBase,
    ConfigKind,
    CortexConfig,
    ModelProfile,
    NeuronConfig,
)
from cortex_kernel.config.tables import ConfigTable, split_tables
from cortex_kernel.validation import error_location

T = TypeVar("T", bound=ConfigBase)
S = TypeVar("S", bound=msgspec.Struct)
KEY_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")

APP_NAME = "cortex"
ENV_PREFIX: dict[ConfigKind, str] = {"cortex": "CORTEX_", "neuron": "NEURON_", "models": "CORTEX_MODELS_"}
FILE_NAME: dict[ConfigKind, str] = {"cortex": "cortex.toml", "neuron": "neuron.toml", "models": "models.toml"}
SYSTEM_DIRS: dict[ConfigKind, tuple[Path, ...]] = {
    "cortex": (Path("/etc/cortex"),),
    "neuron": (Path("/etc/neuron"), Path("/etc/cortex")),
    "models": (Path("/etc/cortex"),),
}


@dataclass(frozen=True)
class LoadedConfig(Generic[T]):
    """A validated configuration plus where it came from.

    ``sources`` maps each dotted key to ``default``, ``file PATH:LINE``, ``env NAME`` or
    ``cli FLAG``, which is what ``cortex-kernel config show`` prints. ``tables`` holds the
    tables the kernel's schema does not declare, raw, by dotted name (``"acme"``,
    ``"routing.acme"``): plugins own them and read them through :meth:`table`. ``texts`` are
    the files read, by path, so that a plugin table's error can name its line.
    """

    kind: ConfigKind
    value: T
    path: Path | None
    sources: dict[str, str]
    catalogue: Catalogue = field(default_factory=Catalogue)
    catalogue_path: Path | None = None
    tables: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict, repr=False)
    # Each plugin table as :meth:`table` validated it, with the raw table it came from: the CLI's
    # check and the plugin reading it later share one conversion. Passed on by ``replace``.
    typed_tables: dict[ConfigTable[Any], tuple[Any, Any]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def table(self, spec: ConfigTable[S]) -> S:
        """The plugin table ``spec`` declares, validated: its defaults where the file has none.

        :raises ConfigError: naming the file, line and key of a bad value or an unknown key (the
            CLI checks every claimed table before a daemon starts, so a plugin reading its table
            at start-up does not meet this for a file that passed ``config check``).
        :raises ValueError: for a table of the other file (a ``neuron.toml`` table read from
            the gateway's configuration): a plugin bug, not an operator's.

        The table is converted once: later reads (the plugin's, after the CLI's check) return
        the same instance, which is why a table's schema is best declared ``frozen=True``.
        """
        if spec.kind != self.kind:
            raise ValueError(f"[{spec.name}] is a {spec.kind}.toml table; this is {self.kind}.toml")
        raw = self.tables.get(spec.name)
        cached = self.typed_tables.get(spec)
        if cached is not None and cached[0] is raw:
            return cast(S, cached[1])
        value = convert_located(spec.schema, {} if raw is None else raw, self.sources, self.texts, spec.name)
        self.typed_tables[spec] = (raw, value)
        return value

    def error_at(self, key: str, problem: str, expected: str | None = None) -> ConfigError:
        """An error about ``key`` that names where it was set: the file and line, or the variable
        or flag, as the loader's own errors do (for checks made once the configuration is loaded)."""
        return _located(problem, key, expected, self.sources, self.texts)


def search_paths(kind: ConfigKind) -> list[Path]:
    """The candidate files for ``kind`` in search order (see the module docstring)."""
    name = FILE_NAME[kind]
    dirs = [
        Path(platformdirs.user_config_dir(APP_NAME)),
        Path(platformdirs.site_config_dir(APP_NAME)),
        *SYSTEM_DIRS[kind],
    ]
    return [d / name for d in dirs]


def find_config_file(kind: ConfigKind, explicit: Path | None) -> Path | None:
    """Return the explicit path (which must exist) or the first file found in the search order."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError("file not found", source=explicit, expected=f"a readable {FILE_NAME[kind]}")
        return explicit
    for candidate in search_paths(kind):
        if candidate.is_file():
            return candidate
    return None


def _read_toml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", source=path) from exc
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        message, _, position = str(exc).partition(" (at line ")
        line = int(position.split(",", 1)[0]) if position[:1].isdigit() else None
        raise ConfigError(f"invalid TOML: {message}", source=path, line=line, expected="TOML syntax") from exc


def parse_scalar(raw: str) -> Any:
    """Read an environment or ``--set`` value as a TOML literal, else as a plain string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = target
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _merge(base: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def env_layer(kind: ConfigKind, environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Collect ``PREFIX_SECTION__KEY`` variables into a nested dict plus their sources."""
    prefix = ENV_PREFIX[kind]
    roots = set(ROOT_TYPES[kind].__struct_fields__)
    tables_allowed = kind != "models"
    layer: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(prefix):
            continue
        dotted = ".".join(part.lower() for part in name[len(prefix) :].split("__"))
        if dotted.split(".", 1)[0] not in roots and not (tables_allowed and "." in dotted):
            continue
        value = parse_scalar(raw)
        _set_dotted(layer, dotted, value)
        leaves = _flatten(value, dotted + ".") if isinstance(value, dict) else {dotted: value}
        for key in leaves:
            sources[key] = f"env {name}"
    return layer, sources


def _type_at(root: type[msgspec.Struct], key: str) -> Any:
    """The msgspec type info of dotted ``key`` (list indices skipped) in ``root``, or ``None``."""
    current: Any = msgspec.inspect.type_info(root)
    for part in key.replace("]", "").replace("[", ".").split("."):
        if part.isdigit() or not part:
            continue
        info = current
        while isinstance(info, msgspec.inspect.ListType | msgspec.inspect.UnionType):
            if isinstance(info, msgspec.inspect.ListType):
                info = info.item_type
            else:
                structs = [t for t in info.types if isinstance(t, msgspec.inspect.StructType)]
                if not structs:
                    return None
                info = structs[0]
        if not isinstance(info, msgspec.inspect.StructType):
            return None
        field = next((f for f in info.fields if f.name == part), None)
        if field is None:
            return None
        current = field.type
    return current


def _describe_type(info: Any) -> str | None:
    """A short human form of a msgspec type, for the "expected" part of messages."""
    if isinstance(info, msgspec.inspect.LiteralType):
        return "one of " + ", ".join(repr(v) for v in info.values)
    if isinstance(info, msgspec.inspect.UnionType):
        parts = [_describe_type(t) for t in info.types]
        return " or ".join(p for p in parts if p)
    if isinstance(info, msgspec.inspect.StructType):
        return "a table with keys " + ", ".join(f.name for f in info.fields)
    if isinstance(info, msgspec.inspect.IntType | msgspec.inspect.FloatType):
        noun = "an integer" if isinstance(info, msgspec.inspect.IntType) else "a number"
        limits = ((">=", info.ge), (">", info.gt), ("<=", info.le), ("<", info.lt))
        bounds = [f"{op} {v}" for op, v in limits if v is not None]
        return f"{noun} {' and '.join(bounds)}".strip()
    if isinstance(info, msgspec.inspect.ListType):
        return f"a list of {_describe_type(info.item_type)}"
    if isinstance(info, msgspec.inspect.DictType):
        return "a table"
    if isinstance(info, msgspec.inspect.NoneType):
        return None
    name = type(info).__name__.removesuffix("Type").lower()
    nouns = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}
    return nouns.get(name, name)


def _convert(
    kind: ConfigKind,
    data: dict[str, Any],
    sources: Mapping[str, str],
    texts: Mapping[str, str],
) -> ConfigBase:
    return convert_located(ROOT_TYPES[kind], data, sources, texts)


def convert_located(
    schema: type[S], data: Any, sources: Mapping[str, str], texts: Mapping[str, str], prefix: str = ""
) -> S:
    """Validate ``data`` as ``schema``; a failure is a :class:`ConfigError` naming file, line and key.

    :param prefix: the dotted name of the table ``data`` is (``""`` for a whole file), so that
        keys in messages and line look-ups are the file's own (``routing.acme.key``).
    """
    try:
        return msgspec.convert(data, schema, strict=True)
    except msgspec.ValidationError as exc:
        raise _validation_error(schema, exc, sources, texts, prefix) from exc


def _validation_error(
    root: type[msgspec.Struct],
    exc: msgspec.ValidationError,
    sources: Mapping[str, str],
    texts: Mapping[str, str],
    prefix: str = "",
) -> ConfigError:
    where = error_location(exc)
    problem = where.problem
    key: str | None = where.key or None
    if where.unknown_field:
        problem = "unknown key"
        info = _type_at(root, where.path) if where.path else msgspec.inspect.type_info(root)
        described = _describe_type(info) if info is not None else None
        expected = described.replace("a table with keys", "one of") if described else None
    elif where.missing_field:
        problem = "required key is missing"
        expected = None
    else:
        annotation = _type_at(root, key) if key else None
        described = _describe_type(annotation) if annotation is not None else None
        if problem.startswith("Expected"):
            got = problem.rpartition(", got ")[2] if ", got " in problem else None
            problem = f"wrong type (got {got})" if got else problem.replace("Expected", "must be", 1)
        expected = described
    if prefix:
        key = f"{prefix}.{key}" if key else prefix
    return _located(problem, key, expected, sources, texts)


def _located(
    problem: str,
    key: str | None,
    expected: str | None,
    sources: Mapping[str, str],
    texts: Mapping[str, str],
) -> ConfigError:
    """Attach the file (or env/cli origin) and line of ``key`` to an error."""
    origin = _origin_of(key, sources)
    line = None
    if origin and origin.startswith("file "):
        path = origin[5:].rsplit(":", 1)[0] if origin.count(":") else origin[5:]
        origin = path
        if path in texts and key:
            line = locate_line(texts[path], key)
    return ConfigError(problem, source=origin, key=key, line=line, expected=expected)


def _origin_of(key: str | None, sources: Mapping[str, str]) -> str | None:
    if key is None:
        return next((s for s in sources.values() if s.startswith("file ")), None)
    probe = key
    while True:
        for dotted, source in sources.items():
            related = dotted == probe or dotted.startswith(probe + ".") or probe.startswith(dotted + ".")
            if related and source != "default":
                return source
        cut = max(probe.rfind("."), probe.rfind("["))
        if cut <= 0:
            break
        probe = probe[:cut]
    files = [s for s in sources.values() if s.startswith("file ")]
    return files[0] if files else None


def _file_sources(path: Path, data: Mapping[str, Any], text: str) -> dict[str, str]:
    sources: dict[str, str] = {}
    for key in _flatten(data):
        line = locate_line(text, key)
        sources[key] = f"file {path}:{line}" if line else f"file {path}"
    return sources


def load_layers(
    kind: ConfigKind,
    path: Path | None,
    *,
    environ: Mapping[str, str],
    overrides: Mapping[str, Any] | None = None,
) -> tuple[ConfigBase, dict[str, str], dict[str, str], dict[str, Any]]:
    """Merge the four layers for ``kind`` and validate; return value, sources, file texts and
    the plugin tables (every table the schema does not declare, raw; none for ``models``)."""
    root = ROOT_TYPES[kind]
    defaults = cast(dict[str, Any], msgspec.to_builtins(root())) if kind != "models" else {}
    merged: dict[str, Any] = copy.deepcopy(defaults)
    sources = dict.fromkeys(_flatten(defaults), "default")
    texts: dict[str, str] = {}
    if path is not None:
        data, text = _read_toml(path)
        texts[str(path)] = text
        _merge(merged, data)
        sources.update(_file_sources(path, data, text))
    env_data, env_sources = env_layer(kind, environ)
    _merge(merged, env_data)
    sources.update(env_sources)
    for dotted, value in (overrides or {}).items():
        _set_dotted(merged, dotted, value)
        sources[dotted] = "cli"
    tables = split_tables(root, merged) if kind != "models" else {}
    value = _convert(kind, merged, sources, texts)
    return value, sources, texts, tables


def _load_catalogue(path: Path | None) -> tuple[Catalogue, dict[str, str], dict[str, str]]:
    if path is None:
        return Catalogue(), {}, {}
    value, sources, texts, _ = load_layers("models", path, environ={})
    catalogue = cast(Catalogue, value)
    check_catalogue(catalogue, sources, texts)
    return catalogue, sources, texts


def resolve_catalogue_path(config_path: Path | None, models_config: str | None) -> Path | None:
    """``models_config`` relative to the naming file's directory, else ``models.toml`` beside it."""
    base = config_path.parent if config_path is not None else None
    if models_config:
        candidate = Path(models_config).expanduser()
        if not candidate.is_absolute():
            if base is None:
                raise ConfigError(
                    "a relative models_config needs a configuration file to be relative to",
                    key="models_config",
                    expected="an absolute path",
                )
            candidate = base / candidate
        if not candidate.is_file():
            raise ConfigError("models file not found", key="models_config", source=candidate)
        return candidate
    if base is not None and (base / "models.toml").is_file():
        return base / "models.toml"
    return None


def check_catalogue(catalogue: Catalogue, sources: Mapping[str, str], texts: Mapping[str, str]) -> None:
    """Cross-field checks of ``models.toml``: unique ids, aliases that point somewhere real."""
    seen: set[str] = set()
    for index, profile in enumerate(catalogue.models):
        if profile.id in seen:
            raise _located(
                f"duplicate model id {profile.id!r}", f"models[{index}].id", "unique ids", sources, texts
            )
        seen.add(profile.id)
    for index, profile in enumerate(catalogue.models):
        _check_residency(profile, f"models[{index}]", sources, texts)
    for alias in catalogue.aliases:
        if alias in seen:
            raise _located(
                f"alias {alias!r} shadows a model id",
                f"aliases.{alias}",
                "a name no model uses",
                sources,
                texts,
            )
        targets = catalogue.targets(alias)
        unknown = [target for target in targets if target not in seen]
        if unknown or not targets:
            raise _located(
                f"alias {alias!r} points to unknown model {unknown[0]!r}"
                if unknown
                else f"alias {alias!r} names no model",
                f"aliases.{alias}",
                "the id of a [[models]] entry, or a list of them",
                sources,
                texts,
            )


def _check_residency(
    profile: ModelProfile, key: str, sources: Mapping[str, str], texts: Mapping[str, str]
) -> None:
    """A model's TTLs and replica counts must make sense together."""
    idle, unload = profile.idle_ttl_s, profile.unload_ttl_s
    if idle is not None and unload is not None and unload <= idle:
        raise _located(
            f"unload_ttl_s ({unload:g}) must be longer than idle_ttl_s ({idle:g}) for {profile.id!r}",
            f"{key}.unload_ttl_s",
            "more seconds than idle_ttl_s",
            sources,
            texts,
        )
    if profile.min_replicas > profile.max_replicas:
        raise _located(
            f"min_replicas ({profile.min_replicas}) exceeds max_replicas ({profile.max_replicas}) "
            f"for {profile.id!r}",
            f"{key}.min_replicas",
            "at most max_replicas",
            sources,
            texts,
        )


def _check_cortex(
    config: CortexConfig,
    catalogue: Catalogue,
    sources: Mapping[str, str],
    texts: Mapping[str, str],
    catalogue_origin: tuple[Mapping[str, str], Mapping[str, str]],
) -> None:
    for key in ("listen", "metrics_listen"):
        try:
            parse_listen(getattr(config.gateway, key))
        except ValueError as exc:
            raise _located(str(exc), f"gateway.{key}", LISTEN_FORM, sources, texts) from exc
    for group in ("api_keys", "admin_keys"):
        for index, digest in enumerate(getattr(config.auth, group)):
            if not KEY_DIGEST.match(digest):
                raise _located(
                    "keys are stored as digests, not in clear",
                    f"auth.{group}[{index}]",
                    "sha256:<64 hex digits> (see `cortex-kernel config hash-key`)",
                    sources,
                    texts,
                )
    residency = config.residency
    if residency.idle_ttl_s and residency.unload_ttl_s and residency.unload_ttl_s <= residency.idle_ttl_s:
        raise _located(
            "unload_ttl_s must be longer than idle_ttl_s",
            "residency.unload_ttl_s",
            "more seconds than residency.idle_ttl_s",
            sources,
            texts,
        )
    names: set[str] = set()
    for index, neuron in enumerate(config.neurons):
        if neuron.name in names:
            raise _located(
                f"duplicate neuron name {neuron.name!r}",
                f"neurons[{index}].name",
                "unique names",
                sources,
                texts,
            )
        names.add(neuron.name)
        try:
            check_endpoint(neuron.endpoint)
        except ValueError as exc:
            raise _located(str(exc), f"neurons[{index}].endpoint", ENDPOINT_FORM, sources, texts) from exc
    if names:
        for index, profile in enumerate(catalogue.models):
            unknown = [n for n in profile.pinned_on if n not in names]
            if unknown:
                raise _located(
                    f"model {profile.id!r} is pinned to unknown neuron {unknown[0]!r}",
                    f"models[{index}].pinned_on",
                    "names of [[neurons]] in cortex.toml: " + ", ".join(sorted(names)),
                    *catalogue_origin,
                )


def _check_neuron(
    config: NeuronConfig, catalogue: Catalogue, sources: Mapping[str, str], texts: Mapping[str, str]
) -> None:
    try:
        parse_listen(config.listen)
    except ValueError as exc:
        raise _located(str(exc), "listen", LISTEN_FORM, sources, texts) from exc
    for index, entry in enumerate(config.default_models):
        if isinstance(entry, str) and catalogue.get(entry) is None:
            raise _located(
                f"default model {entry!r} is not in the catalogue",
                f"default_models[{index}]",
                "a model id from models.toml, or an inline profile table",
                sources,
                texts,
            )


def load_config(
    kind: ConfigKind,
    explicit: Path | None = None,
    *,
    environ: Mapping[str, str],
    overrides: Mapping[str, Any] | None = None,
    search: bool = True,
) -> LoadedConfig[Any]:
    """Load, merge and validate one configuration, and its catalogue for cortex and neuron files.

    Raises :class:`ConfigError` for every problem; nothing here starts anything.
    """
    path = find_config_file(kind, explicit) if (explicit is not None or search) else None
    value, sources, texts, tables = load_layers(kind, path, environ=environ, overrides=overrides)
    if kind == "models":
        catalogue = cast(Catalogue, value)
        check_catalogue(catalogue, sources, texts)
        return LoadedConfig(kind, value, path, sources, catalogue, path, texts=texts)
    models_config = cast(CortexConfig | NeuronConfig, value).models_config
    try:
        catalogue_path = resolve_catalogue_path(path, models_config)
    except ConfigError as exc:
        raise _located(exc.problem, "models_config", exc.expected, sources, texts) from exc
    catalogue, catalogue_sources, catalogue_texts = _load_catalogue(catalogue_path)
    if kind == "cortex":
        origin = (catalogue_sources, catalogue_texts)
        _check_cortex(cast(CortexConfig, value), catalogue, sources, texts, origin)
    else:
        _check_neuron(cast(NeuronConfig, value), catalogue, sources, texts)
    return LoadedConfig(kind, value, path, sources, catalogue, catalogue_path, tables, texts)
