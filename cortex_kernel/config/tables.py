"""Configuration tables that plugins own: their declaration, and how the loader sets them aside.

The kernel's schema names only the kernel's own tables (``[gateway]``, ``[routing]``, ...). A
plugin with settings of its own (a dialect's store, a console's bounds, one router's tuning)
declares its table as a :class:`ConfigTable` from ``register_config_tables``: a name and a msgspec
Struct. The loader cannot know those tables (which plugins load is itself configuration), so it
keeps every table it does not know *raw*, with the source of each key, instead of rejecting it;
once the plugins are loaded, :mod:`cortex_kernel.config.plugin_tables` validates each claimed
table with the same ``FILE:LINE: KEY: PROBLEM`` errors as the rest of the file and refuses a table
no plugin claims (a misspelt ``[consle]`` is an error, not a table silently ignored).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import msgspec

# Covariant: a table of a Struct subclass is a table of ``msgspec.Struct`` (it is read-only).
S_co = TypeVar("S_co", bound=msgspec.Struct, covariant=True)

TableKind = Literal["cortex", "neuron"]
_NAME = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*$")


@dataclass(frozen=True)
class ConfigTable(Generic[S_co]):
    """A table of ``cortex.toml`` (or ``neuron.toml``) that one plugin owns and validates.

    ``name`` is the table's dotted path: a top-level table (``"acme"`` for ``[acme]``, named after
    the plugin so that blocking the plugin is recognised, see docs/plugins.md) or a sub-table of a
    kernel table (``"routing.acme"`` for ``[routing.acme]``, the settings of router ``acme``).
    ``schema`` is a msgspec Struct with ``forbid_unknown_fields=True`` whose every field has a
    default, so a file without the table gets the defaults and a misspelt key is an error.
    ``kind`` is the file the table lives in.

    Declare it once, at module level (it is immutable), return it from
    ``register_config_tables``, and read the validated value with
    ``kernel.config.table(TABLE)``, which returns an instance of ``schema``.
    """

    name: str
    schema: type[S_co]
    kind: TableKind = "cortex"

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"config table name {self.name!r} is not a dotted lowercase name")
        if not (isinstance(self.schema, type) and issubclass(self.schema, msgspec.Struct)):
            raise TypeError(f"config table {self.name!r}: schema must be a msgspec.Struct subclass")
        if not self.schema.__struct_config__.forbid_unknown_fields:
            raise TypeError(f"config table {self.name!r}: schema must set forbid_unknown_fields=True")
        if any(field.required for field in msgspec.structs.fields(self.schema)):
            raise TypeError(f"config table {self.name!r}: every field of its schema needs a default")


def split_tables(root: type[msgspec.Struct], data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Remove from ``data`` (in place) every table ``root`` does not declare; return them by dotted name.

    Only *tables* (mappings) are set aside: an unknown scalar key stays, and the schema rejects it
    as before. Sub-tables of the kernel's own tables are looked for too (``[routing.acme]``), one
    Struct level at a time; arrays of tables (``[[neurons]]``) are the kernel's and left alone.
    """
    info = msgspec.inspect.type_info(root)
    assert isinstance(info, msgspec.inspect.StructType)
    fields = {field.name: field.type for field in info.fields}
    tables: dict[str, Any] = {}
    for key in list(data):
        value = data[key]
        if not isinstance(value, dict):
            continue
        dotted = f"{prefix}{key}"
        kernel_type = fields.get(key)
        if kernel_type is None:
            tables[dotted] = data.pop(key)
        elif isinstance(kernel_type, msgspec.inspect.StructType):
            tables.update(split_tables(kernel_type.cls, value, dotted + "."))
    return tables
