"""Per-invocation CLI state: the environment, plugin blocks and the lazily built plugin manager."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import click
import pluggy

from cortex_kernel.config.loader import parse_scalar
from cortex_kernel.plugins import build_plugin_manager


@dataclass
class CliState:
    """Held in ``click.Context.obj``; tests build their own through ``CliRunner(env=...)``."""

    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    blocked: tuple[str, ...] = ()
    _pm: pluggy.PluginManager | None = None

    def plugin_manager(self, extra_blocked: tuple[str, ...] = ()) -> pluggy.PluginManager:
        """The plugin manager for this invocation; a new one if config adds blocks."""
        if extra_blocked:
            return build_plugin_manager(blocked=(*self.blocked, *extra_blocked), environ=self.environ)
        if self._pm is None:
            self._pm = build_plugin_manager(blocked=self.blocked, environ=self.environ)
        return self._pm


def state_from(ctx: click.Context) -> CliState:
    """Find (or create) the :class:`CliState` of the root context."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    state: CliState = root.obj
    params: dict[str, Any] = root.params
    from_flags = tuple(params.get("block_plugin") or ())
    if from_flags and not set(from_flags) <= set(state.blocked):
        state.blocked = (*state.blocked, *from_flags)
        state._pm = None
    return state


def parse_sets(values: tuple[str, ...]) -> dict[str, Any]:
    """Turn ``--set KEY=VALUE`` options into dotted overrides (values read as TOML literals)."""
    overrides: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--set")
        overrides[key.strip()] = parse_scalar(raw.strip())
    return overrides
