"""The neuron daemon: per-host model lifecycle and OpenAI-compatible generation over harnesses."""
