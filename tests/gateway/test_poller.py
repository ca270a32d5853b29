"""The poller against a neuron on loopback: what it keeps of a node that stops answering."""

from __future__ import annotations

import asyncio
from typing import cast

import aiohttp

from cortex_gateway.fleet import Fleet, Node
from cortex_gateway.poller import Poller
from tests.anthropic.scripted import MODEL, ScriptedNeuron, Stream, chunk


async def test_a_node_that_goes_down_leaves_no_phantom_requests() -> None:
    # ScriptedNeuron (a test double of a neuron) holds a stream open for as long as the test
    # needs and reports it in flight, which a tiny real model cannot do reliably.
    neuron = ScriptedNeuron().then(Stream([chunk(content="hi"), 0.5, chunk(finish="stop")])).start()
    running = True
    node = Node(name="n1", endpoint=neuron.url)
    fleet = Fleet([node], down_after=3)
    try:
        async with aiohttp.ClientSession() as session:
            poller = Poller(fleet, session, {}, timeout_s=1.0)
            async with session.post(f"{neuron.url}/v1/chat/completions", json={"model": MODEL}) as stream:
                assert (await stream.content.readline()).startswith(b"data: ")
                await poller.poll_node(node)
                assert node.up and node.models[MODEL].in_flight == 1
                await stream.read()  # the stream ends; the node's last report still counts it
            neuron.stop()
            running = False
            for _ in range(3):
                await poller.poll_node(node)
    finally:
        if running:
            neuron.stop()
    # mypy still holds node.up True from the assert before the polls that changed it
    assert not cast(bool, node.up)
    assert MODEL in node.models  # what it held is still known, for when it returns
    assert (node.models[MODEL].in_flight, node.models[MODEL].queued) == (0, 0)
    assert node.model_load(MODEL) == 0


async def test_a_poll_the_gateway_overtakes_with_its_own_change_does_not_undo_it() -> None:
    """The gateway puts a model to sleep while a poll's reads are out: the poll's ``/models``
    still shows it ready, and applying that would route the next request to a sleeping model
    (which the neuron refuses, 503 ``model_sleeping``). The poll leaves the models as they are."""
    neuron = ScriptedNeuron().start()
    node = Node(name="n1", endpoint=neuron.url)
    fleet = Fleet([node])
    try:
        async with aiohttp.ClientSession() as session:
            poller = Poller(fleet, session, {}, timeout_s=10.0)
            await poller.poll_node(node)
            assert node.models[MODEL].state == "ready"
            neuron.models_delay_s = 1.0
            poll = asyncio.create_task(poller.poll_node(node))
            await asyncio.sleep(0.3)  # the poll has asked; its answer is on its way
            node.models[MODEL].state = "sleeping"  # as Residency.sleep_on records a sleep the
            node.own_changes += 1  # neuron answered
            await poll
            assert node.up and node.models[MODEL].state == "sleeping"
            neuron.models_delay_s = 0.0
            await poller.poll_node(node)  # the next poll is the neuron's word again
            assert node.models[MODEL].state == "ready"
    finally:
        neuron.stop()
