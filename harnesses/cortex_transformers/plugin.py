"""Entry point of the transformers harness plugin."""

from __future__ import annotations

from cortex_kernel.harness import Harness, HarnessContext, HarnessSpec
from cortex_kernel.hookspecs import hookimpl
from cortex_transformers.options import TransformersOptions


def _build(context: HarnessContext) -> Harness:
    from cortex_transformers.harness import TransformersHarness

    return TransformersHarness(context)


@hookimpl(trylast=True)
def register_harnesses() -> list[HarnessSpec]:
    return [
        HarnessSpec(
            name="transformers",
            factory=_build,
            description="Hugging Face transformers + torch, on CPU or the profile's CUDA devices.",
            path_options=frozenset({"hub_cache_dir"}),
            options=TransformersOptions,
        )
    ]
