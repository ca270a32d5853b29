"""Building the plugin manager and describing what it loaded.

Load order (documented in ``docs/plugins.md``):

1. the hook specifications from :mod:`cortex_kernel.hookspecs`;
2. names blocked by ``--block-plugin``, ``[plugins] block`` or ``CORTEX_KERNEL_BLOCK_PLUGINS``
   (blocked names are never imported);
3. every entry point in the ``cortex_kernel`` group (built-ins included), unless
   ``CORTEX_KERNEL_NO_AUTOLOAD=1``;
4. plugin objects passed in by the caller (tests, embedding applications).

The manager is built by :func:`build_plugin_manager`, never at import time, so every process and
every test gets its own.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pluggy

from cortex_kernel import hookspecs

ENTRY_POINT_GROUP = "cortex_kernel"
ENV_NO_AUTOLOAD = "CORTEX_KERNEL_NO_AUTOLOAD"
ENV_BLOCK = "CORTEX_KERNEL_BLOCK_PLUGINS"
ENV_TRACE = "CORTEX_KERNEL_TRACE_PLUGINS"


class PluginError(Exception):
    """A plugin could not be loaded or contradicts another; the CLI exits with status 2."""


def blocked_from_env(environ: Mapping[str, str]) -> list[str]:
    """Plugin names listed, comma-separated, in ``CORTEX_KERNEL_BLOCK_PLUGINS``."""
    return [name.strip() for name in environ.get(ENV_BLOCK, "").split(",") if name.strip()]


def build_plugin_manager(
    *,
    load_entrypoints: bool = True,
    blocked: Iterable[str] = (),
    extra: Iterable[tuple[str, object]] = (),
    environ: Mapping[str, str] | None = None,
) -> pluggy.PluginManager:
    """Return a fresh plugin manager with the specs added, blocks applied and plugins loaded.

    :param load_entrypoints: load the ``cortex_kernel`` entry-point group (built-ins and third
        parties); ``CORTEX_KERNEL_NO_AUTOLOAD=1`` in ``environ`` turns it off too.
    :param blocked: plugin names (entry-point names) that must not be loaded.
    :param extra: ``(name, plugin)`` pairs registered after the entry points.
    :param environ: the environment to read switches from (defaults to none).
    """
    env = environ or {}
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in [*blocked, *blocked_from_env(env)]:
        pm.set_blocked(name)
    if load_entrypoints and env.get(ENV_NO_AUTOLOAD, "") not in ("1", "true", "yes"):
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:  # a broken third-party plugin must not look like a kernel crash
            raise PluginError(f"failed to load a {ENTRY_POINT_GROUP!r} entry point: {exc!r}") from exc
    for name, plugin in extra:
        if not pm.is_blocked(name):
            pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(str(exc)) from exc
    if env.get(ENV_TRACE, "") in ("1", "true", "yes"):
        pm.trace.root.setwriter(sys.stderr.write)
        pm.enable_tracing()
    return pm


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin, as ``cortex-kernel plugins`` lists it."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": list(self.hooks),
        }


def describe_plugins(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """Name, origin, version and implemented hooks of every registered plugin, sorted by name."""
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # a blocked name
            continue
        callers = pm.get_hookcallers(plugin) or []
        dist = dists.get(id(plugin))
        infos.append(
            PluginInfo(
                name=name,
                module=getattr(plugin, "__name__", type(plugin).__name__),
                distribution=dist.project_name if dist is not None else None,
                version=dist.version if dist is not None else None,
                hooks=tuple(sorted(caller.name for caller in callers)),
            )
        )
    return sorted(infos, key=lambda info: info.name)
