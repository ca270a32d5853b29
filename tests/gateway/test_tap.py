"""The relay's tap: TTFT from the first token (not the role frame), the gaps between later
chunks, bounded, and the usage found in the stream's tail."""

from __future__ import annotations

import time

from cortex_gateway.tap import MAX_GAPS, RequestTap
from cortex_kernel.events import Event, EventBus, RequestFinished

ROLE = b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
TOKEN = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\ndata: [DONE]\n\n'


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def handle(self, event: Event) -> None:
        self.events.append(event)


def tapped(pieces: list[tuple[bytes, float]]) -> RequestFinished:
    """The event of a streamed request whose reply came as ``pieces``, each after its pause."""
    recorder = Recorder()
    tap = RequestTap(
        EventBus([recorder]),
        dialect="openai",
        endpoint="/v1/chat/completions",
        model="m",
        started=time.perf_counter(),
    )
    tap.streamed = True
    for piece, pause in pieces:
        time.sleep(pause)
        tap.chunk(piece)
    tap.finish(200)
    (event,) = recorder.events
    assert isinstance(event, RequestFinished)
    return event


def test_the_gaps_are_the_times_between_chunks_after_the_first_token() -> None:
    event = tapped([(ROLE, 0.0), (TOKEN, 0.02), (TOKEN, 0.03), (TOKEN, 0.01), (USAGE, 0.0)])
    assert event.first_token_s is not None and event.first_token_s >= 0.02
    first, second, third = event.inter_token_s
    assert first >= 0.03 and 0.01 <= second < first and third >= 0
    assert sum(event.inter_token_s) <= event.duration_s - event.first_token_s
    assert (event.prompt_tokens, event.completion_tokens) == (3, 2)


def test_the_gaps_are_bounded_and_a_reply_with_no_token_has_none() -> None:
    many = tapped([(TOKEN, 0.0)] * (MAX_GAPS + 50))
    assert len(many.inter_token_s) == MAX_GAPS and all(gap >= 0 for gap in many.inter_token_s)
    empty = tapped([(ROLE, 0.0)])
    assert empty.first_token_s is None and empty.inter_token_s == ()
