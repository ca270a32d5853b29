"""Every configuration key is documented in docs/configuration.md."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from cortex_kernel.config.schema import ROOT_TYPES

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
def test_every_key_is_documented(kind):
    missing = [key for key in _keys(msgspec.inspect.type_info(ROOT_TYPES[kind])) if f"`{key}`" not in DOC]
    assert not missing, f"document these {kind} keys in docs/configuration.md: {missing}"
