"""What a harness's stream of :class:`Delta` adds up to, for the harness tests of every engine."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable

from cortex_kernel.harness import Delta, Usage


async def collect(stream: AsyncIterable[Delta]) -> list[Delta]:
    return [delta async for delta in stream]


def text_of(deltas: Iterable[Delta]) -> str:
    return "".join(d.text + d.reasoning for d in deltas)


def usage_of(deltas: list[Delta]) -> Usage:
    """The usage the last delta carries (a finished stream always ends with it)."""
    usage = deltas[-1].usage
    assert usage is not None
    return usage
