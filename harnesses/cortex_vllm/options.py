"""The vLLM harness's options: the ``[harnesses.vllm]`` table and each profile's ``options``.

They are read and checked before vLLM is imported or an engine starts, so a misspelt key fails a
load at once with a message that names it, instead of after an engine has spent a minute
starting. A profile's options win over the harness table; the ``engine_args`` and
``chat_template_kwargs`` tables are merged key by key.

vLLM's own engine arguments live in their own ``engine_args`` table rather than beside the
harness's options: vLLM adds engine arguments in every release, and one flat namespace would
sooner or later give a harness option and an engine argument the same name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cortex_kernel.errors import BadRequest


def _positive_int(key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _invalid(key, "a positive integer", value)
    return value


def _fraction(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise _invalid(key, "a number in (0, 1]", value)
    return float(value)


def _positive_float(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise _invalid(key, "a positive number", value)
    return float(value)


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _invalid(key, "true or false", value)
    return value


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _invalid(key, "a non-empty string", value)
    return value


def _table(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _invalid(key, "a table", value)
    return dict(value)


def _invalid(key: str, expected: str, value: Any) -> BadRequest:
    return BadRequest(
        f"vllm harness option {key!r} must be {expected}, not {value!r}", code="invalid_option", param=key
    )


# Every option, with its checker. Documented in docs/harnesses.md ("The vLLM harness").
_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "tensor_parallel_size": _positive_int,
    "pipeline_parallel_size": _positive_int,
    "multi_host": _bool,
    "gpu_memory_utilization": _fraction,
    "kv_cache_memory_bytes": _positive_int,
    "dtype": _text,
    "enforce_eager": _bool,
    "enable_prefix_caching": _bool,
    "sleep_mode": _bool,
    "tool_parser": _text,
    "reasoning_parser": _text,
    "chat_template": _text,
    "chat_template_kwargs": _table,
    "default_max_tokens": _positive_int,
    "hub_cache_dir": _text,
    "engine_args": _table,
    "unload_timeout_s": _positive_float,
}
OPTION_NAMES = frozenset(_CHECKS)
# Tables merged key by key (profile keys over harness keys) rather than replaced whole.
_MERGED = frozenset({"engine_args", "chat_template_kwargs"})


@dataclass(frozen=True)
class VllmOptions:
    """The checked options of one model (profile options over the harness table)."""

    tensor_parallel_size: int | None = None
    pipeline_parallel_size: int = 1
    multi_host: bool = False
    gpu_memory_utilization: float | None = None
    kv_cache_memory_bytes: int | None = None
    dtype: str | None = None
    enforce_eager: bool | None = None
    enable_prefix_caching: bool | None = None
    sleep_mode: bool = True
    tool_parser: str | None = None
    reasoning_parser: str | None = None
    chat_template: str | None = None
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    default_max_tokens: int | None = None
    hub_cache_dir: str | None = None
    engine_args: dict[str, Any] = field(default_factory=dict)
    unload_timeout_s: float = 30.0


def read_options(harness_options: Mapping[str, Any], profile_options: Mapping[str, Any]) -> VllmOptions:
    """Check and merge the harness table and a profile's options.

    :raises BadRequest: (``invalid_option``) an unknown key, or a value of the wrong kind; the
        message names the key.
    """
    values: dict[str, Any] = {}
    for source in (harness_options, profile_options):
        for key, value in source.items():
            check = _CHECKS.get(key)
            if check is None:
                known = ", ".join(sorted(OPTION_NAMES))
                raise BadRequest(
                    f"unknown vllm harness option {key!r} (known: {known}; vLLM engine arguments "
                    "go in the 'engine_args' table)",
                    code="invalid_option",
                    param=key,
                )
            checked = check(key, value)
            if key in _MERGED:
                checked = {**values.get(key, {}), **checked}
            values[key] = checked
    return VllmOptions(**values)
