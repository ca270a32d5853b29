"""Every manifest key is documented in docs/deploy.md, and the example manifest parses."""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec

from cortex_deploy.manifest import ManifestFile

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC = (REPO_ROOT / "docs" / "deploy.md").read_text()


def keys(struct: type) -> set[str]:
    found: set[str] = set()
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        found.add(field.name)
        inner = field.type
        if isinstance(inner, msgspec.inspect.ListType):
            inner = inner.item_type
        if isinstance(inner, msgspec.inspect.StructType):
            found |= keys(inner.cls)
    return found


def test_every_manifest_key_is_documented() -> None:
    forms = ("- `{}`", "`[{}]`", "`[[{}]]`")
    missing = sorted(key for key in keys(ManifestFile) if not any(form.format(key) in DOC for form in forms))
    assert not missing, f"document these manifest keys in docs/deploy.md: {missing}"


def test_example_manifest_is_valid_toml_for_the_schema() -> None:
    data = tomllib.loads((REPO_ROOT / "fleet.example.toml").read_text())
    manifest = msgspec.convert(data, ManifestFile)
    assert manifest.gateways and manifest.neurons
