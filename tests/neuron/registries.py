"""A neuron's model registry built in-process for the tests of what it exports (no daemon)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cortex_kernel.config.schema import AdmissionSection, Catalogue
from cortex_kernel.harness import HarnessSpec
from cortex_neuron.registry import ModelRegistry


def model_registry(
    cache_dir: Path, specs: Sequence[HarnessSpec] = (), catalogue: Catalogue | None = None
) -> ModelRegistry:
    """A registry of ``specs`` over ``catalogue`` (by default neither: enough to build the
    neuron's metric families), with default admission and no model roots."""
    return ModelRegistry(
        specs=list(specs),
        catalogue=catalogue or Catalogue(),
        admission=AdmissionSection(),
        allow_models=None,
        model_roots=[],
        cache_dir=cache_dir,
        harness_options={},
    )
