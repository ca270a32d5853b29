"""A neuron's refusal of a profile reaches the client with its own 4xx, not as a 502."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.daemons import Daemon, http_json

pytestmark = pytest.mark.slow


def _model(model_id: str, source: str) -> str:
    fields = f'id = "{model_id}"\nharness = "transformers"\nsource = "{source}"\nmin_devices = 0\n'
    return f"\n[[models]]\n{fields}"


def test_a_neurons_4xx_for_a_load_passes_through(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon]
) -> None:
    neuron = start_neuron()
    catalogue = _model("ghost", "synthetic:no-such-model") + _model("escape", "/etc")
    gateway = start_gateway({"n1": neuron}, catalogue_extra=catalogue)
    for model, want in (("ghost", (404, "model_not_found")), ("escape", (403, "source_not_allowed"))):
        status, reply, _ = http_json(
            "POST",
            f"{gateway.url}/v1/chat/completions",
            {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
            timeout=120,
        )
        assert (status, reply["error"]["code"]) == want, reply
    # The gateway still serves what the node can load.
    status, reply, _ = http_json(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        {"model": "tiny-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        timeout=120,
    )
    assert status == 200, reply
