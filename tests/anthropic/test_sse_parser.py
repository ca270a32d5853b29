"""The SSE reader the dialect uses on a neuron's stream, fed byte chunks directly.

Each case is one way a real stream arrives: CRLF line ends, comment keep-alives, a multi-byte
character split across two reads, a frame split anywhere, and the stream ending mid-event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cortex_anthropic.streaming import chat_chunks, sse_data
from cortex_kernel.errors import CortexError, UpstreamError


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _data(*parts: bytes) -> list[str]:
    return [payload async for payload in sse_data(_chunks(*parts))]


async def test_crlf_line_ends_are_the_same_as_lf() -> None:
    assert await _data(b"data: one\r\n\r\ndata: two\r\n\r\n") == ["one", "two"]


async def test_comments_and_other_fields_are_skipped() -> None:
    stream = b": keep-alive\n\nevent: ignored\nid: 7\ndata: payload\nretry: 10\n\n: bye\n\n"
    assert await _data(stream) == ["payload"]


async def test_multi_line_data_joins_with_newlines_and_one_leading_space_is_dropped() -> None:
    assert await _data(b"data: a\ndata:b\ndata:  c\n\n") == ["a\nb\n c"]


async def test_utf8_split_across_chunks_is_decoded_whole() -> None:
    encoded = "data: héllo 🦀\n\n".encode()
    cut = encoded.index("🦀".encode()) + 2  # inside the four-byte character
    assert await _data(encoded[:cut], encoded[cut:]) == ["héllo 🦀"]


async def test_a_frame_split_at_every_byte_is_read_the_same() -> None:
    stream = b'data: {"a": 1}\r\n\r\n: ping\n\ndata: [DONE]\n\n'
    assert await _data(*(stream[i : i + 1] for i in range(len(stream)))) == ['{"a": 1}', "[DONE]"]


async def test_end_of_stream_mid_event_yields_what_arrived() -> None:
    assert await _data(b"data: first\n\ndata: last") == ["first", "last"]
    assert await _data(b"data: first\n\ndata: last\n") == ["first", "last"]
    assert await _data(b"data: first\n\n: a comment cut off") == ["first"]


async def test_a_chunk_cut_off_mid_json_is_an_upstream_error_not_a_crash() -> None:
    with pytest.raises(UpstreamError):
        [chunk async for chunk in chat_chunks(_chunks(b'data: {"choices": [{"ind'))]


async def test_an_error_frame_is_raised_and_done_ends_the_stream() -> None:
    frame = b'data: {"error": {"message": "no", "type": "overloaded_error", "code": null}}\n\n'
    with pytest.raises(CortexError) as caught:
        [chunk async for chunk in chat_chunks(_chunks(frame))]
    assert caught.value.status == 503
    done = b'data: {"choices": []}\n\ndata: [DONE]\n\ndata: {"never": "read"}\n\n'
    assert len([chunk async for chunk in chat_chunks(_chunks(done))]) == 1
