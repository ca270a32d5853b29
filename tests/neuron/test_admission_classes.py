"""The admission gate's class order and its no-starvation bound, driven step by step."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from cortex_kernel.errors import Overloaded
from cortex_neuron.admission import AdmissionGate


async def queue_up(gate: AdmissionGate, classes: Sequence[str | None]) -> list[str]:
    """One slot held; then a waiter per class, in this order. Returns (release the holder, order)."""
    order: list[str] = []
    holder = gate.admit("main")
    await holder.__aenter__()

    async def wait(index: int, request_class: str | None) -> None:
        async with gate.admit(request_class):
            order.append(f"{index}:{request_class}")
            await asyncio.sleep(0)

    tasks = []
    for index, request_class in enumerate(classes):
        tasks.append(asyncio.create_task(wait(index, request_class)))
        await asyncio.sleep(0)
    assert gate.queued == len(classes)
    await holder.__aexit__(None, None, None)
    await asyncio.gather(*tasks)
    return order


async def test_higher_classes_go_first_and_absent_or_unknown_is_main() -> None:
    gate = AdmissionGate(1, 16, 10.0, max_bypass=100)
    order = await queue_up(gate, ["auxiliary", "compaction", None, "subagent", "bogus", "main"])
    assert order == ["2:None", "4:bogus", "5:main", "3:subagent", "1:compaction", "0:auxiliary"]


async def test_no_waiter_is_overtaken_more_than_max_bypass_times() -> None:
    gate = AdmissionGate(1, 32, 10.0, max_bypass=3)
    classes = ["auxiliary", "compaction"] + ["main"] * 10
    order = await queue_up(gate, classes)
    position = {label.split(":")[0]: index for index, label in enumerate(order)}
    # Each waiter is admitted after at most (waiters ahead of it on arrival) + max_bypass others.
    for index in range(len(classes)):
        assert position[str(index)] <= index + 3
    assert order[:5] == ["2:main", "3:main", "4:main", "0:auxiliary", "1:compaction"]


async def test_max_bypass_zero_is_plain_fifo() -> None:
    gate = AdmissionGate(1, 16, 10.0, max_bypass=0)
    order = await queue_up(gate, ["auxiliary", "main", "subagent"])
    assert order == ["0:auxiliary", "1:main", "2:subagent"]


async def test_a_custom_mapping_and_junk_header_values() -> None:
    gate = AdmissionGate(1, 16, 10.0, priorities={"main": 1, "batch": 5})
    assert gate.request_class(" BATCH ") == "batch"
    assert gate.request_class("auxiliary") == "main"  # not configured here
    assert gate.request_class("x" * 10_000) == "main"
    assert gate.request_class(None) == "main"
    order = await queue_up(gate, ["main", "batch"])
    assert order == ["1:batch", "0:main"]


async def test_a_waiter_that_gives_up_leaves_the_queue_and_the_slot_passes_on() -> None:
    gate = AdmissionGate(1, 16, 0.2)
    holder = gate.admit()
    await holder.__aenter__()
    with pytest.raises(Overloaded):
        async with gate.admit("auxiliary"):
            pass
    assert gate.queued == 0
    second = gate.admit("main")
    waiter = asyncio.create_task(second.__aenter__())
    await asyncio.sleep(0)
    assert gate.queued == 1
    await holder.__aexit__(None, None, None)
    await asyncio.wait_for(waiter, 5)
    assert (gate.in_flight, gate.queued) == (1, 0)
    await second.__aexit__(None, None, None)
    assert gate.in_flight == 0
