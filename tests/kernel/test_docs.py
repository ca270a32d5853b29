"""Every configuration key is documented in docs/configuration.md."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from cortex_kernel.config.schema import ROOT_TYPES, ConfigKind

DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()


def _keys(info: msgspec.inspect.Type, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(info, msgspec.inspect.StructType):
        for field in info.fields:
            name = f"{prefix}{field.name}"
            inner = field.type
            if isinstance(inner, msgspec.inspect.UnionType):
                structs = [t for t in inner.types if isinstance(t, msgspec.inspect.StructType)]
                inner = structs[0] if structs and name != "default_models" else inner
            if isinstance(inner, msgspec.inspect.StructType):
                keys.extend(_keys(inner, name + "."))
            elif isinstance(inner, msgspec.inspect.ListType) and isinstance(
                inner.item_type, msgspec.inspect.StructType
            ):
                keys.append(name)
                keys.extend(_keys(inner.item_type, name + "[]."))
            else:
                keys.append(name)
    return keys


@pytest.mark.parametrize("kind", sorted(ROOT_TYPES))
def test_every_key_is_documented(kind: ConfigKind) -> None:
    missing = [key for key in _keys(msgspec.inspect.type_info(ROOT_TYPES[kind])) if f"`{key}`" not in DOC]
    assert not missing, f"document these {kind} keys in docs/configuration.md: {missing}"


def _plugin_tables() -> list[tuple[str, msgspec.inspect.Type]]:
    from cortex_kernel.config.plugin_tables import declared_tables
    from cortex_kernel.plugins import build_plugin_manager

    tables = declared_tables(build_plugin_manager(environ={}))
    return [(f"{t.kind}:{t.name}", msgspec.inspect.type_info(t.schema)) for t in tables]


def test_the_built_in_plugins_declare_tables() -> None:
    assert {"cortex:console", "cortex:responses", "cortex:routing.affinity"} <= {
        n for n, _ in _plugin_tables()
    }


@pytest.mark.parametrize(
    ("table", "info"), _plugin_tables(), ids=lambda value: value if isinstance(value, str) else "keys"
)
def test_every_plugin_table_key_is_documented(table: str, info: msgspec.inspect.Type) -> None:
    """The installed plugins' own tables (``register_config_tables``) are documented like the
    kernel's: every key, under its dotted table name."""
    name = table.split(":", 1)[1]
    missing = [key for key in _keys(info, name + ".") if f"`{key}`" not in DOC]
    assert not missing, f"document these keys of plugin table [{name}] in docs/configuration.md: {missing}"
