"""Entry point of the vLLM harness plugin.

This module imports nothing from vLLM: the plugin is registered on every host, including those
without vLLM (``cortex-kernel plugins`` lists it everywhere), and vLLM takes seconds to import.
Only building the harness, the first time a model asks for it, needs vLLM; a host without it
then gets an error that says how to install it.
"""

from __future__ import annotations

import importlib.util
import re
from importlib.metadata import PackageNotFoundError, version

from cortex_kernel.errors import CortexError
from cortex_kernel.harness import Harness, HarnessContext, HarnessSpec
from cortex_kernel.hookspecs import hookimpl
from cortex_vllm.options import VllmOptions

# The vLLM releases whose in-process API this harness was written against (the 'vllm' extra).
SUPPORTED = ((0, 30), (0, 34))
_INSTALL = "pip install 'cortex-kernel[vllm]'"


def _unavailable(message: str) -> CortexError:
    return CortexError(message, status=503, code="harness_unavailable")


def check_vllm() -> str:
    """The installed vLLM version, if this harness supports it.

    :raises CortexError: (503, ``harness_unavailable``) vLLM is missing or outside the range.
    """
    if importlib.util.find_spec("vllm") is None:
        raise _unavailable(f"the vllm harness needs vLLM, which is not installed here: {_INSTALL}")
    try:
        installed = version("vllm")
    except PackageNotFoundError as exc:
        raise _unavailable(f"vLLM is importable but not installed as a package: {_INSTALL}") from exc
    numbers = tuple(int(part) for part in re.findall(r"\d+", installed)[:2])
    low, high = SUPPORTED
    if not low <= numbers < high:
        raise _unavailable(
            f"the vllm harness supports vLLM >= {'.'.join(map(str, low))}, < "
            f"{'.'.join(map(str, high))}; vLLM {installed} is installed ({_INSTALL})"
        )
    return installed


def _build(context: HarnessContext) -> Harness:
    check_vllm()
    from cortex_vllm.harness import VllmHarness

    return VllmHarness(context)


@hookimpl(trylast=True)
def register_harnesses() -> list[HarnessSpec]:
    return [
        HarnessSpec(
            name="vllm",
            factory=_build,
            description="vLLM AsyncLLM in-process, its engine core on the profile's GPUs.",
            # engine_args can name classes for vLLM to import; chat_template may be a file path.
            path_options=frozenset({"hub_cache_dir", "chat_template"}),
            code_options=frozenset({"engine_args"}),
            options=VllmOptions,
        )
    ]
