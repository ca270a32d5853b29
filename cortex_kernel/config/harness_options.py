"""Checking each model's ``[models.options]`` against the options its harness declares.

A harness declares its options as a msgspec Struct with ``forbid_unknown_fields``
(``HarnessSpec.options``). The catalogue itself cannot know them (harnesses are plugins, and
which are installed decides the plugin set, which the configuration decides), so this check runs
once the plugins are known: in ``config check``, and before ``serve`` or ``neuron`` starts. A
misspelt or mistyped option then fails with the same ``FILE:LINE: KEY: PROBLEM`` as any other
configuration error, not at the model's first load.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import pluggy

from cortex_kernel.config.errors import ConfigError
from cortex_kernel.config.loader import LoadedConfig
from cortex_kernel.config.locate import locate_line
from cortex_kernel.config.schema import NeuronConfig
from cortex_kernel.validation import error_location


def check_harness_options(loaded: LoadedConfig[Any], option_types: Mapping[str, type[Any]]) -> None:
    """Validate every profile's ``options`` (and, in ``neuron.toml``, every
    ``[harnesses.NAME]`` table) against the harness's option Struct.

    :param option_types: harness name to its options Struct; harnesses that declare none (or are
        not installed) are skipped.
    :raises ConfigError: naming the file, line and key (``models[N].options.KEY``).
    """
    for index, profile in enumerate(loaded.catalogue.models):
        _check(
            option_types.get(profile.harness),
            profile.options,
            profile.harness,
            loaded.catalogue_path,
            f"models[{index}].options",
        )
    if isinstance(loaded.value, NeuronConfig):
        for name, table in loaded.value.harnesses.items():
            _check(option_types.get(name), table, name, loaded.path, f"harnesses.{name}")


def _check(
    kind: type[Any] | None, options: Mapping[str, Any], harness: str, path: Path | None, prefix: str
) -> None:
    if kind is None:
        return
    try:
        msgspec.convert(dict(options), kind, strict=True)
    except msgspec.ValidationError as exc:
        where = error_location(exc)
        key = f"{prefix}.{where.key}" if where.key else prefix
        text = path.read_text(encoding="utf-8") if path is not None and path.is_file() else None
        known = ", ".join(sorted(field.name for field in msgspec.structs.fields(kind)))
        raise ConfigError(
            f"unknown {harness} option" if where.unknown_field else where.problem,
            source=path,
            key=key,
            line=locate_line(text, key) if text is not None else None,
            expected=f"one of {known}" if where.unknown_field else None,
        ) from None


def option_types(pm: pluggy.PluginManager) -> dict[str, type[Any]]:
    """Each registered harness's options Struct, by harness name."""
    specs = [spec for result in pm.hook.register_harnesses() if result for spec in result]
    return {spec.name: spec.options for spec in specs if spec.options is not None}
