"""``GET /models/sse``: llama.cpp's model event stream, from the fleet's model states.

Zed's llama.cpp provider subscribes to ``{api_url}/models/sse`` when ``/v1/models`` looks like
a router's (see :mod:`cortex_gateway.model_status`). Each ``data:`` line is one JSON event
``{"model", "event", "data": {"status", "progress"}}``: a ``status_change`` to ``loaded`` or
``unloaded`` makes Zed list models again (so a model's real context and tools show up once it
loads), ``models_reload`` (model ``*``) does the same when models appear or disappear, and a
``loading`` status with ``progress {stages, current, value}`` is shown as a label in its model
picker.

The gateway learns states from polls and from its own loads, not from callbacks, so the stream
compares the merged listing every ``tick_s`` and sends what changed. Neurons do not report how
far a load has got, so a ``loading`` event carries one stage, ``model``, at ``value`` 0.0: Zed
then shows "Loading 0%" until the ``loaded`` event replaces it, which tells the user that the
model is loading rather than leaving a silent wait. The stream ends when the gateway drains.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import msgspec

KEEPALIVE_EVERY_S = 15.0
OPENING = b": cortex-kernel model events\n\n"
KEEPALIVE = b": keep-alive\n\n"

_encode = msgspec.json.Encoder().encode


def event_frame(model: str, event: str, status: str | None = None) -> bytes:
    payload: dict[str, object] = {"model": model, "event": event}
    if status is not None:
        data: dict[str, object] = {"status": status}
        if status == "loading":
            data["progress"] = {"stages": ["model"], "current": "model", "value": 0.0}
        payload["data"] = data
    return b"data: " + _encode(payload) + b"\n\n"


def changes(before: dict[str, str], after: dict[str, str]) -> list[bytes]:
    """The events that turn the states ``before`` into ``after`` (model id → status word)."""
    frames = []
    if set(before) != set(after):
        frames.append(event_frame("*", "models_reload"))
    for model, status in after.items():
        if model in before and before[model] != status:
            frames.append(event_frame(model, "status_change", status))
    return frames


async def model_events(
    snapshot: Callable[[], dict[str, str]],
    stopping: Callable[[], bool],
    *,
    tick_s: float,
    keepalive_s: float = KEEPALIVE_EVERY_S,
) -> AsyncIterator[bytes]:
    """The stream's body: an opening comment, then changes every ``tick_s`` until ``stopping``."""
    previous = snapshot()
    yield OPENING
    quiet = 0.0
    while not stopping():
        await asyncio.sleep(tick_s)
        current = snapshot()
        frames = changes(previous, current)
        previous = current
        if frames:
            quiet = 0.0
            yield b"".join(frames)
            continue
        quiet += tick_s
        if quiet >= keepalive_s:
            quiet = 0.0
            yield KEEPALIVE
