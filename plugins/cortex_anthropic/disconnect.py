"""Stopping work for a client that left before its (non-streamed) answer was ready.

A streamed response learns of a departed client when a write fails, and Starlette then closes
the body generator, which closes the neuron stream. A non-streamed answer writes nothing until
the end, so without this the neuron would generate a whole reply nobody reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import Request

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work``; cancel it and raise :class:`ClientGone` if the client disconnects first.

    Assumes the request body has been read already, so the next ASGI ``receive`` message can
    only be ``http.disconnect``.
    """
    loop = asyncio.get_running_loop()
    task = loop.create_task(work)
    watcher = loop.create_task(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise ClientGone
    finally:
        for pending in (task, watcher):
            if not pending.done():
                pending.cancel()
                await asyncio.wait({pending})
