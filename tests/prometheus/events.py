"""The events the sink tests feed a :class:`~cortex_prometheus.sink.MetricsSink`, with defaults."""

from __future__ import annotations

from typing import Any

from cortex_kernel.events import RequestFinished

CHAT = "/v1/chat/completions"


def finished(**fields: Any) -> RequestFinished:
    """A finished request: a 200 from node ``n1`` for model ``m`` on the OpenAI chat endpoint,
    one second long, unless ``fields`` say otherwise."""
    defaults = {"dialect": "openai", "endpoint": CHAT, "model": "m", "node": "n1", "status": 200}
    return RequestFinished(**{**defaults, "duration_s": 1.0, **fields})
