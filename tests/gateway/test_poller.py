"""The poller against a neuron on loopback: what it keeps of a node that stops answering."""

from __future__ import annotations

import aiohttp

from cortex_gateway.fleet import Fleet, Node
from cortex_gateway.poller import Poller
from tests.anthropic.scripted import MODEL, ScriptedNeuron, Stream, chunk


async def test_a_node_that_goes_down_leaves_no_phantom_requests():
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
    assert not node.up
    assert MODEL in node.models  # what it held is still known, for when it returns
    assert (node.models[MODEL].in_flight, node.models[MODEL].queued) == (0, 0)
    assert node.model_load(MODEL) == 0
