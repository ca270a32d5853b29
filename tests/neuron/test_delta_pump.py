"""The neuron's delta pump keeps a cancellation that lands as the next delta arrives.

On Python 3.11, ``asyncio.wait_for`` returns the awaited result when it is cancelled in the same
loop step the result arrives, swallowing the cancellation: a stream whose client had just left
went on reading deltas (the console's event stream held a gateway's shutdown for its grace that
way). The pump's ``get`` must raise ``CancelledError`` instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from cortex_kernel.harness import Delta
from cortex_neuron.responses import DeltaPump


async def _deltas(release: asyncio.Event) -> AsyncIterator[Delta]:
    await release.wait()
    yield Delta(text="late")


async def test_a_cancel_landing_with_the_next_delta_is_not_swallowed() -> None:
    release = asyncio.Event()
    pump = DeltaPump(_deltas(release))
    reader = asyncio.create_task(pump.get(30.0))
    await asyncio.sleep(0)  # the reader now waits on the queue
    release.set()
    for _ in range(100):  # the producer puts the delta, which wakes the reader's getter
        if not pump._queue.empty():
            break
        await asyncio.sleep(0)
    assert not reader.done()
    reader.cancel()  # in the same loop step as the wake-up
    outcome = (await asyncio.gather(reader, return_exceptions=True))[0]
    await pump.close()
    assert isinstance(outcome, asyncio.CancelledError), f"the cancellation was swallowed: {outcome!r}"
