"""The Responses event stream: ``event:`` + ``data:`` frames, keep-alive comments, and failures as
``response.failed``.

While the model is silent (a cold load, a long prefill, a queue) a ``: keep-alive`` comment goes
out every few seconds: SSE clients ignore comments, and idle-stream timers (Codex has one) see
bytes. A failure after the headers went out ends the stream with ``response.failed`` carrying
an error code, never with a cut-off stream.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import get_args

import msgspec

from cortex_kernel.errors import CortexError
from cortex_kernel.pacing import with_keepalives
from cortex_responses.events import EventTranslator
from cortex_responses.protocol import StreamEvent

log = logging.getLogger(__name__)

KEEPALIVE = b": keep-alive\n\n"
_encode = msgspec.json.Encoder().encode


def _frame_head(kind: type[StreamEvent]) -> bytes:
    return b"event: " + str(kind.__struct_config__.tag).encode() + b"\ndata: "


_HEADS = {kind: _frame_head(kind) for kind in get_args(StreamEvent)}


def sse_frame(event: StreamEvent) -> bytes:
    """``event: TYPE`` + ``data: JSON`` + a blank line."""
    return _HEADS[type(event)] + _encode(event) + b"\n\n"


Batch = list[StreamEvent]


def paced(events: AsyncIterator[Batch], keepalive_s: float) -> AsyncIterator[Batch | None]:
    """``events`` as they come, with ``None`` (a keep-alive) whenever none came for ``keepalive_s``."""
    return with_keepalives(events, keepalive_s)


async def sse_body(
    events: AsyncIterator[Batch], translator: EventTranslator, keepalive_s: float
) -> AsyncIterator[bytes]:
    """The body of a streamed ``/v1/responses``."""
    try:
        async for batch in paced(events, keepalive_s):
            yield KEEPALIVE if batch is None else b"".join(map(sse_frame, batch))
    except CortexError as exc:
        log.warning("responses stream failed: %s", exc.message)
        yield sse_frame(translator.failed(exc))
    except Exception:
        log.exception("responses stream failed")
        yield sse_frame(translator.failed(CortexError("internal error; see the gateway log")))
