"""The vLLM harness's options: the ``[harnesses.vllm]`` table and each profile's ``options``.

They are declared as a Struct that forbids unknown fields, so ``cortex-kernel config check``
validates a catalogue's ``[models.options]`` against it (``HarnessSpec.options``), and they are
read and checked again before vLLM is imported or an engine starts, so a misspelt key fails a
load at once with a message that names it, instead of after an engine has spent a minute
starting. A profile's options win over the harness table; the ``engine_args`` and
``chat_template_kwargs`` tables are merged key by key.

vLLM's own engine arguments live in their own ``engine_args`` table rather than beside the
harness's options: vLLM adds engine arguments in every release, and one flat namespace would
sooner or later give a harness option and an engine argument the same name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from cortex_kernel.errors import BadRequest
from cortex_kernel.validation import error_location

PositiveInt = Annotated[int, msgspec.Meta(ge=1, description="a positive integer")]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0, description="a positive number")]
Fraction = Annotated[float, msgspec.Meta(gt=0, le=1, description="a number in (0, 1]")]
Text = Annotated[str, msgspec.Meta(pattern=r"\S", description="a non-empty string")]


class VllmOptions(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The options of one model (profile options over the harness table); every one has a
    default. Documented in docs/harnesses.md ("The vLLM harness")."""

    tensor_parallel_size: PositiveInt | None = None
    pipeline_parallel_size: PositiveInt = 1
    multi_host: bool = False
    gpu_memory_utilization: Fraction | None = None
    kv_cache_memory_bytes: PositiveInt | None = None
    dtype: Text | None = None
    enforce_eager: bool | None = None
    enable_prefix_caching: bool | None = None
    sleep_mode: bool = True
    tool_parser: Text | None = None
    reasoning_parser: Text | None = None
    chat_template: Text | None = None
    chat_template_kwargs: dict[str, Any] = msgspec.field(default_factory=dict)
    default_max_tokens: PositiveInt | None = None
    hub_cache_dir: Text | None = None
    engine_args: dict[str, Any] = msgspec.field(default_factory=dict)
    unload_timeout_s: PositiveFloat = 30.0


OPTION_NAMES = frozenset(VllmOptions.__struct_fields__)
# Tables merged key by key (profile keys over harness keys) rather than replaced whole.
_MERGED = frozenset({"engine_args", "chat_template_kwargs"})


def read_options(harness_options: Mapping[str, Any], profile_options: Mapping[str, Any]) -> VllmOptions:
    """Check and merge the harness table and a profile's options.

    :raises BadRequest: (``invalid_option``) an unknown key, or a value of the wrong kind; the
        message names the key.
    """
    values: dict[str, Any] = dict(harness_options)
    for key, value in profile_options.items():
        merge = key in _MERGED and isinstance(value, Mapping) and isinstance(values.get(key), Mapping)
        values[key] = {**values[key], **value} if merge else value
    try:
        return msgspec.convert(values, VllmOptions, strict=True)
    except msgspec.ValidationError as exc:
        where = error_location(exc)
        key = where.key.split(".")[0].split("[")[0]
        if where.unknown_field:
            known = ", ".join(sorted(OPTION_NAMES))
            message = (
                f"unknown vllm harness option {key!r} (known: {known}; vLLM engine arguments "
                "go in the 'engine_args' table)"
            )
        else:
            message = f"vllm harness option {key!r}: {where.problem}"
        raise BadRequest(message, code="invalid_option", param=key) from None
