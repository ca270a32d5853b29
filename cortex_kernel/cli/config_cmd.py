"""``cortex-kernel config``: show the effective configuration, check a file."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import msgspec

from cortex_kernel.cli.context import parse_sets, state_from
from cortex_kernel.cli.options import config_options
from cortex_kernel.config.loader import LoadedConfig, load_config, search_paths
from cortex_kernel.config.plugin_tables import check_plugin_config, check_plugin_tables, table_values
from cortex_kernel.config.schema import ConfigKind
from cortex_kernel.keys import key_digest

KINDS = ["cortex", "neuron", "models"]
REDACTED = "<redacted>"
_SECRET_WORDS = ("secret", "password", "passwd", "api_key", "private_key")


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        rows: list[tuple[str, Any]] = []
        for key, child in value.items():
            rows.extend(_flatten(child, f"{prefix}{key}."))
        return rows
    return [(prefix.rstrip("."), value)]


def _source(key: str, sources: dict[str, str]) -> str:
    probe = key
    while probe:
        if probe in sources:
            return sources[probe]
        probe = probe.rpartition(".")[0]
    children = {s for k, s in sources.items() if k.startswith(key + ".")}
    return children.pop() if len(children) == 1 else "default"


def is_secret(key: str) -> bool:
    """Whether the dotted ``key`` holds a secret in clear (a token, a password).

    The ``[auth]`` key lists are sha256 digests, made to be stored and shown, so they are not
    secrets here; the neuron tokens (and any harness option named like a token or a password)
    are. ``max_tokens``-style counts are not.
    """
    name = key.rpartition(".")[2].lower()
    return name == "token" or name.endswith("_token") or any(w in name for w in _SECRET_WORDS)


def render_show(
    loaded: LoadedConfig[Any], tables: Mapping[str, Any] | None = None
) -> list[tuple[str, Any, str]]:
    """Rows of ``(dotted key, value, source)`` for the effective configuration, secrets redacted.

    Output of ``config show`` ends up in tickets and chat; a set secret shows as ``<redacted>``
    (an unset one as null, so the operator still sees whether it is set).

    :param tables: the plugin tables, validated, by dotted name (``table_values``); each is shown
        where it sits in the file (``[routing.acme]`` among the ``routing`` keys).
    """
    data = msgspec.to_builtins(loaded.value)
    for name, value in (tables or {}).items():
        *parents, leaf = name.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return [
        (key, REDACTED if isinstance(value, str) and is_secret(key) else value, _source(key, loaded.sources))
        for key, value in _flatten(data)
    ]


@click.group("config")
def config() -> None:
    """Inspect and validate configuration files."""


@config.command("show")
@click.option("--kind", type=click.Choice(KINDS), default="cortex", show_default=True, help="Which file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of annotated TOML-like lines.")
@config_options
@click.pass_context
def show(
    ctx: click.Context, kind: ConfigKind, as_json: bool, config_path: Path | None, sets: tuple[str, ...]
) -> None:
    """Print the effective configuration and where each value came from.

    Precedence, lowest first: defaults, the file, CORTEX_SECTION__KEY (NEURON_... for
    neuron.toml) environment variables, then --set flags.
    """
    state = state_from(ctx)
    loaded = load_config(kind, config_path, environ=state.environ, overrides=parse_sets(sets))
    tables: dict[str, Any] = {}
    if kind != "models":
        pm = state.plugin_manager(tuple(loaded.value.plugins.block))
        for warning in check_plugin_tables(loaded, pm):
            click.echo(f"warning: {warning}", err=True)
        tables = table_values(loaded, pm)
    rows = render_show(loaded, tables)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "file": str(loaded.path) if loaded.path else None,
                    "models_file": str(loaded.catalogue_path) if loaded.catalogue_path else None,
                    "values": {key: {"value": value, "source": source} for key, value, source in rows},
                },
                indent=2,
            )
        )
        return
    searched = ", ".join(str(p) for p in search_paths(kind))
    click.echo(f"# file: {loaded.path or f'none found (searched {searched})'}")
    if kind != "models":
        click.echo(f"# models: {loaded.catalogue_path or 'none'} ({len(loaded.catalogue.models)} models)")
    for key, value, source in rows:
        click.echo(f"{key} = {json.dumps(value)}  # {source}")


@config.command("check")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--kind", type=click.Choice(KINDS), default=None, help="File kind; default: from its name.")
@click.pass_context
def check(ctx: click.Context, file: Path, kind: ConfigKind | None) -> None:
    """Validate FILE (cortex.toml, neuron.toml or models.toml) without starting anything.

    The installed plugins check what they own too: each model's harness options and every plugin
    table ([console], [routing.affinity], ...); a table no loaded plugin declares is an error.
    Exits 0 when the file is valid and 2 with one message naming the key otherwise.
    """
    if kind is None:
        stem = file.name.split(".")[0]
        kind = "neuron" if "neuron" in stem else "models" if "models" in stem else "cortex"
    # The environment must not make a broken file look valid, so only the file is read.
    environ = {k: v for k, v in state_from(ctx).environ.items() if not k.startswith(("CORTEX_", "NEURON_"))}
    loaded = load_config(kind, file, environ=environ)
    blocked = tuple(loaded.value.plugins.block) if kind != "models" else ()
    for warning in check_plugin_config(loaded, state_from(ctx).plugin_manager(blocked)):
        click.echo(f"warning: {warning}", err=True)
    count = len(loaded.catalogue.models)
    click.echo(f"{file}: ok ({kind}; {count} model{'s' if count != 1 else ''} in catalogue)")


@config.command("hash-key")
@click.argument("key", required=False)
def hash_key(key: str | None) -> None:
    """Print the digest to store in [auth] api_keys or admin_keys for KEY (read from stdin if absent)."""
    secret = key if key is not None else sys.stdin.readline().strip()
    if not secret:
        raise click.BadParameter("empty key", param_hint="KEY")
    click.echo(key_digest(secret))
