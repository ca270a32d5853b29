"""The scripted neuron now lives in :mod:`cortex_kernel.testing.scripted_neuron` (for plugin
authors too); these names stay importable from here for the tests that use them."""

from cortex_kernel.testing.scripted_neuron import (
    DONE,
    KEEPALIVE,
    MODEL,
    Json,
    ScriptedNeuron,
    Stream,
    chunk,
    openai_error,
    reply,
    text_reply,
    tool_call,
    usage,
)

__all__ = [
    "DONE",
    "KEEPALIVE",
    "MODEL",
    "Json",
    "ScriptedNeuron",
    "Stream",
    "chunk",
    "openai_error",
    "reply",
    "text_reply",
    "tool_call",
    "usage",
]
