"""The transformers harness's options, declared as a Struct: ``[harnesses.transformers]`` in
``neuron.toml`` (every model) and each profile's ``options`` (which win).

Declaring them lets ``cortex-kernel config check`` refuse a misspelt or mistyped option with its
file and line (``HarnessSpec.options``), and the harness checks the merged options again at each
load, so a profile sent to ``POST /models/load`` cannot slip a typo past either: an option the
harness would silently ignore is the worst kind of configuration error. This module imports
neither torch nor transformers. The options are documented in docs/harnesses.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec

from cortex_kernel.errors import BadRequest
from cortex_kernel.validation import error_location

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
Switch = Literal["auto", "on", "off"]


class TransformersOptions(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Every option the harness reads; ``None`` means "not set" (the harness's default applies)."""

    device: str | None = None
    dtype: str | None = None
    max_concurrency: PositiveInt | None = None
    default_max_tokens: PositiveInt | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    reasoning: Switch | None = None
    tool_calls: Switch | None = None
    pooling: str | None = None
    embed_batch_size: PositiveInt | None = None
    attn_implementation: str | None = None
    revision: str | None = None
    hub_cache_dir: str | None = None
    offline: bool | None = None
    prefix_cache_mb: Annotated[float, msgspec.Meta(ge=0)] | None = None


def check_options(*tables: Mapping[str, Any]) -> None:
    """Refuse an unknown or mistyped key in any of ``tables`` (the harness table, a profile's).

    :raises BadRequest: (``invalid_option``) naming the key.
    """
    for table in tables:
        try:
            msgspec.convert(dict(table), TransformersOptions, strict=True)
        except msgspec.ValidationError as exc:
            where = error_location(exc)
            key = where.key.split(".")[0].split("[")[0]
            if where.unknown_field:
                known = ", ".join(sorted(TransformersOptions.__struct_fields__))
                message = f"unknown transformers harness option {key!r} (known: {known})"
            else:
                message = f"transformers harness option {key!r}: {where.problem}"
            raise BadRequest(message, code="invalid_option", param=key) from None
