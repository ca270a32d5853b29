"""Checking the plugin tables of a loaded configuration against the tables the plugins declare.

Runs once the plugin set is known, like the harness options check (:mod:`.harness_options`): in
``config check`` and ``config show``, and before ``serve`` or ``neuron`` starts. Every raw table
the loader set aside must be claimed by a loaded plugin's :class:`~.tables.ConfigTable` and
validate against its schema; otherwise the daemon does not start. Two exceptions only warn:

- a top-level table named after a *blocked* plugin (``[console]`` while ``console`` is blocked):
  a blocked plugin is never imported, so its tables cannot be checked, and blocking a plugin
  should not force the operator to edit its table out of the file;
- a table that only environment variables set (``CORTEX_ACME__KEY``): the environment is shared
  with other programs, and unrelated ``CORTEX_*`` variables were always left alone.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pluggy

from cortex_kernel.config.harness_options import check_harness_options, option_types
from cortex_kernel.config.loader import LoadedConfig
from cortex_kernel.config.schema import ROOT_TYPES
from cortex_kernel.config.tables import ConfigTable
from cortex_kernel.plugins import PluginError


def declared_tables(pm: pluggy.PluginManager) -> list[ConfigTable[Any]]:
    """Every table the loaded plugins declare through ``register_config_tables``.

    :raises PluginError: for a result that is no :class:`ConfigTable`, two plugins declaring the
        same table, a table that is the kernel's own or lies inside another plugin's table.
    """
    tables: dict[tuple[str, str], ConfigTable[Any]] = {}
    for result in pm.hook.register_config_tables():
        for table in result or ():
            if not isinstance(table, ConfigTable):
                raise PluginError(f"register_config_tables returned {table!r}, not a ConfigTable")
            if (table.kind, table.name) in tables:
                raise PluginError(f"two plugins declare the {table.kind}.toml table [{table.name}]")
            _check_place(table)
            tables[table.kind, table.name] = table
    for table in tables.values():
        parent = table.name.rpartition(".")[0]
        while parent:
            if (table.kind, parent) in tables:
                raise PluginError(f"plugin table [{table.name}] lies inside plugin table [{parent}]")
            parent = parent.rpartition(".")[0]
    return sorted(tables.values(), key=lambda t: (t.kind, t.name))


def _check_place(table: ConfigTable[Any]) -> None:
    """A plugin table may be new at the top level or inside a kernel table, never a kernel key."""
    info: Any = msgspec.inspect.type_info(ROOT_TYPES[table.kind])
    *parents, leaf = table.name.split(".")
    for part in parents:
        field = next((f for f in info.fields if f.name == part), None)
        if field is None:
            return  # inside a table the kernel does not have: split_tables keeps the outer one raw
        if not isinstance(field.type, msgspec.inspect.StructType):
            raise PluginError(f"plugin table [{table.name}]: {part!r} is a kernel key, not a table")
        info = field.type
    if any(f.name == leaf for f in info.fields):
        raise PluginError(f"plugin table [{table.name}] is a key of the kernel's own configuration")


def check_plugin_tables(loaded: LoadedConfig[Any], pm: pluggy.PluginManager) -> list[str]:
    """Validate every raw table of ``loaded`` against the table a loaded plugin declares for it.

    :param pm: the plugin manager built for ``loaded`` (its blocks applied).
    :return: warnings to show the operator (tables of blocked plugins, environment-only tables).
    :raises ConfigError: for a value or key a plugin's schema refuses, or a table no loaded plugin
        claims, naming the file, line and key.
    """
    claimed = {table.name: table for table in declared_tables(pm) if table.kind == loaded.kind}
    warnings = []
    for name in sorted(loaded.tables):
        table = claimed.get(name)
        if table is not None:
            loaded.table(table)
            continue
        origins = [s for k, s in loaded.sources.items() if k == name or k.startswith(name + ".")]
        owner = name.split(".", 1)[0]
        if pm.is_blocked(owner):
            warnings.append(f"[{name}] belongs to blocked plugin {owner!r}: not checked, not used")
        elif origins and all(origin.startswith("env ") for origin in origins):
            where = ", ".join(sorted({o.removeprefix("env ") for o in origins}))
            warnings.append(f"{where}: no loaded plugin declares the table [{name}]: ignored")
        else:
            known = ", ".join(sorted(claimed)) or "none"
            raise loaded.error_at(
                name,
                "unknown table: no loaded plugin declares it",
                f"a kernel table, or a plugin's table: {known}",
            )
    return warnings


def table_values(loaded: LoadedConfig[Any], pm: pluggy.PluginManager) -> dict[str, Any]:
    """Each loaded plugin's table of ``loaded``'s kind, validated, as plain data by dotted name
    (defaults included), for ``config show``."""
    return {
        table.name: msgspec.to_builtins(loaded.table(table))
        for table in declared_tables(pm)
        if table.kind == loaded.kind
    }


def check_plugin_config(loaded: LoadedConfig[Any], pm: pluggy.PluginManager) -> list[str]:
    """Everything in ``loaded`` that plugins validate: each model's harness options, then the
    plugin tables. What ``config check`` runs, and ``serve`` and ``neuron`` before they start.

    :return: warnings for the operator (see :func:`check_plugin_tables`).
    :raises ConfigError: for the first problem, naming file, line and key.
    """
    check_harness_options(loaded, option_types(pm))
    return check_plugin_tables(loaded, pm)
