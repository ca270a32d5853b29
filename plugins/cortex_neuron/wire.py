"""Bodies of the neuron's own (non-OpenAI) API."""

from __future__ import annotations

import msgspec

from cortex_kernel.config.schema import ModelProfile


class LoadRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /models/load``: a catalogue id, or a full profile (what the gateway sends).

    For a model that sleeps, a load wakes it.
    """

    model: str | None = None
    profile: ModelProfile | None = None
    wait: bool = False


class ModelRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /models/sleep|wake``."""

    model: str


class UnloadRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /models/unload``: ``force`` unloads even with requests in flight (they end)."""

    model: str
    force: bool = False
