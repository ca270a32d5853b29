"""The relay's direct path (``cortex_gateway.direct_relay``) against its lane, on the real server.

Every test serves the real gateway app on the httptools server and talks to it over loopback:
once through a gateway with ``[gateway] direct_relay`` on and once with it off, so the lane's
answers (which the rest of the suite pins down) are the reference for the direct path's. The
neuron is :class:`~tests.gateway.direct_fleet.RawNeuron`, which can send the broken replies a
real one sends only by accident. What must match: the status, the headers (but ``date``), the
framing, the body, and the ``RequestFinished`` event (but its timings and ``direct`` flag).
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import Callable
from typing import Any, cast

import h11
import msgspec
import openai
import pytest

from cortex_gateway.proxy import NeuronReply
from cortex_kernel.config.schema import AuthSection, CortexConfig, GatewaySection, RoutingSection
from cortex_kernel.events import RequestFinished, RoutingDecided
from cortex_kernel.keys import key_digest
from tests.gateway.direct_fleet import (
    MODEL,
    SSE_HEAD,
    Action,
    Client,
    RawNeuron,
    Reply,
    chunk,
    delta,
    garbage,
    hang_up,
    served_gateway,
    sse,
    stall,
    stream,
    usage_frame,
    whole,
)

DONE = b"data: [DONE]\n\n"
TIMINGS = {"duration_s", "first_token_s", "inter_token_s", "waited_s", "direct"}


def chat(stream: bool = True, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": stream, **extra}


def config(direct: bool, **sections: Any) -> CortexConfig:
    gateway = GatewaySection(direct_relay=direct, stream_stall_timeout_s=0.5)
    return CortexConfig(gateway=gateway, **sections)


def comparable(event: RequestFinished) -> dict[str, Any]:
    fields: dict[str, Any] = msgspec.structs.asdict(event)
    return {k: v for k, v in fields.items() if k not in TIMINGS}


def wire(reply: Reply) -> tuple[int, dict[bytes, bytes], bytes, bool]:
    return reply.status, {k: v for k, v in reply.headers.items() if k != b"date"}, reply.body, reply.chunked


def completion(text: str) -> bytes:
    return json.dumps(
        {
            "id": "c1",
            "object": "chat.completion",
            "created": 1,
            "model": MODEL,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
        }
    ).encode()


def openai_chunk(text: str | None, finish: str | None = None, usage: bool = False) -> bytes:
    payload: dict[str, Any] = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "choices": [] if usage else [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    }
    if usage:
        payload["usage"] = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    return sse(payload)


# What each differential case queues on the neuron for one request, built afresh per gateway.
CASES: dict[str, tuple[dict[str, Any], Callable[[], list[Action]]]] = {
    "stream": (chat(), lambda: [stream(delta("a"), delta("b"), usage_frame(5, 2), DONE)]),
    "whole": (chat(stream=False), lambda: [whole(completion("hello"))]),
    "stream asked, error answered": (
        chat(),
        lambda: [whole(b'{"error":{"message":"too long","code":"context_length_exceeded"}}', 400)],
    ),
    "retry-after kept": (
        chat(stream=False),
        lambda: [whole(b'{"error":{"message":"busy","code":"queue_full"}}', 503, {"retry-after": "3"})],
    ),
    "neuron lost mid-stream on a frame boundary": (
        chat(),
        lambda: [stream(delta("a"), delta("b"), end=False)],
    ),
    "neuron lost mid-frame": (chat(), lambda: [stream(delta("a"), b'data: {"cut', end=False)]),
    "whole reply cut": (chat(stream=False), lambda: [stream(b'{"id":', end=False)]),
    "stale pooled connection": (chat(), lambda: [hang_up, stream(delta("again"), DONE)]),
    "node failed before answering": (chat(), lambda: [garbage]),
    "stream stalls": (chat(), lambda: [stall(delta("a"))]),
    "404: the model left the node": (
        chat(),
        lambda: [
            whole(b'{"error":{"message":"gone","code":"model_not_found"}}', 404),
            stream(delta("b"), DONE),
        ],
    ),
}


async def run_case(client: Client, neuron: RawNeuron, name: str) -> Reply | str:
    """One case after a warm-up request (so a pooled neuron connection is idle, as in steady
    traffic): the reply, or how the connection ended when no whole reply came."""
    await client.post(chat())  # the neuron's default reply
    body, actions = CASES[name]
    neuron.then(*actions())
    try:
        return await client.post(body)
    except Exception as exc:
        return type(exc).__name__


async def test_direct_and_lane_answer_every_case_alike() -> None:
    neuron = await RawNeuron().start()
    results: dict[bool, dict[str, tuple[Reply | str, RequestFinished]]] = {}
    try:
        for direct in (True, False):
            results[direct] = {}
            async with served_gateway(neuron.url, config(direct)) as gateway:
                for name in CASES:
                    async with Client(gateway.port) as client:
                        reply = await run_case(client, neuron, name)
                    count = 2 * len(results[direct]) + 2
                    await wait_for(lambda: len(gateway.finished()) == count)  # noqa: B023
                    results[direct][name] = (reply, gateway.finished()[-1])
    finally:
        await neuron.stop()
    for name in CASES:
        (direct_reply, direct_event), (lane_reply, lane_event) = results[True][name], results[False][name]
        if isinstance(lane_reply, Reply):
            assert isinstance(direct_reply, Reply), name
            assert wire(direct_reply) == wire(lane_reply), name
        else:
            assert direct_reply == lane_reply, name
        assert comparable(direct_event) == comparable(lane_event), name
        assert not lane_event.direct
    # Taken directly unless the attempt failed before the first byte (then the lane answered).
    handed_over = {"stale pooled connection", "node failed before answering", "404: the model left the node"}
    assert {name for name in CASES if results[True][name][1].direct} == set(CASES) - handed_over
    assert results[True]["stale pooled connection"][1].failovers == 0
    assert results[True]["node failed before answering"][1].failovers == 1
    assert results[True]["404: the model left the node"][1].failovers == 1


def streamed(frames: list[bytes]) -> Callable[[], list[Action]]:
    return lambda: [stream(*frames, DONE)]


def answered(payload: bytes, status: int) -> Callable[[], list[Action]]:
    return lambda: [whole(payload, status)]


async def test_random_replies_are_relayed_alike() -> None:
    """Random streams (frame counts, sizes, UTF-8) and whole replies (statuses, bodies)."""
    rng = random.Random(17)
    scripts: list[tuple[dict[str, Any], Callable[[], list[Action]]]] = []
    for _ in range(24):
        if rng.random() < 0.5:
            frames = [
                delta("".join(rng.choice('aé€𝄞 \n"') for _ in range(rng.randint(0, 40))))
                for _ in range(rng.randint(0, 12))
            ]
            scripts.append((chat(), streamed(frames)))
        else:
            status = rng.choice([200, 200, 400, 422, 429, 500, 503])
            payload = json.dumps({"n": rng.random(), "text": "x" * rng.randint(0, 3000)}).encode()
            scripts.append((chat(stream=rng.random() < 0.5), answered(payload, status)))
    neuron = await RawNeuron().start()
    replies: dict[bool, list[tuple[Any, dict[str, Any]]]] = {}
    try:
        for direct in (True, False):
            async with served_gateway(neuron.url, config(direct)) as gateway, Client(gateway.port) as client:
                await client.post(chat())
                got = []
                for body, actions in scripts:
                    neuron.then(*actions())
                    got.append(wire(await client.post(body)))
                await wait_for(lambda: len(gateway.finished()) == len(scripts) + 1)
                events = gateway.finished()[1:]
                if direct:
                    assert all(event.direct for event in events)
                replies[direct] = [
                    (reply, comparable(event)) for reply, event in zip(got, events, strict=True)
                ]
    finally:
        await neuron.stop()
    assert replies[True] == replies[False]


BAD_REQUESTS: dict[str, tuple[bytes, dict[str, str], int, str]] = {
    "malformed JSON": (b'{"model": "scripted", ', {}, 400, "invalid_json"),
    "no model": (b'{"messages": []}', {}, 400, "missing_model"),
    "a model that is not a string": (b'{"model": 5}', {}, 422, "invalid_request_error"),
    "an unknown model": (b'{"model": "nope", "messages": []}', {}, 404, "model_not_found"),
    "not JSON": (
        b"model=scripted",
        {"content-type": "application/x-www-form-urlencoded"},
        415,
        "unsupported_media_type",
    ),
    "nested past any decoder": (
        b'{"model": "scripted", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        {},
        400,
        "invalid_json",
    ),
}


async def test_bad_requests_are_refused_by_the_lane_in_its_envelope() -> None:
    """Malformed, incomplete, mistyped, unknown, non-JSON and hostile bodies are declined by the
    direct route and refused by the lane exactly as with the path off; a body over the direct
    path's 256 KiB is the lane's and still served."""
    neuron = await RawNeuron().start()
    got: dict[bool, list[tuple[int, Any, RequestFinished]]] = {}
    try:
        for direct in (True, False):
            async with served_gateway(neuron.url, config(direct)) as gateway, Client(gateway.port) as client:
                await client.post(chat())
                replies = [await client.post(body, headers) for body, headers, _, _ in BAD_REQUESTS.values()]
                large = await client.post(chat(padding="x" * (300 * 1024)))
                await wait_for(lambda: len(gateway.finished()) == len(BAD_REQUESTS) + 2)
                events = gateway.finished()[1:]
                got[direct] = [(r.status, r.body, e) for r, e in zip([*replies, large], events, strict=True)]
    finally:
        await neuron.stop()
    for (status, body, event), (name, (_, _, expected, code)) in zip(
        got[True], BAD_REQUESTS.items(), strict=False
    ):
        assert status == expected, name
        error = json.loads(body)["error"]
        assert code in (error["code"], error["type"]), name
        assert not event.direct and event.status == expected, name
    assert got[True][-1][0] == 200 and not got[True][-1][2].direct  # over 256 KiB: the lane's
    assert [(s, b, comparable(e)) for s, b, e in got[True]] == [
        (s, b, comparable(e)) for s, b, e in got[False]
    ]


async def test_the_openai_sdk_streams_and_completes_on_the_direct_path() -> None:
    neuron = await RawNeuron().start()
    try:
        async with served_gateway(neuron.url, config(True)) as gateway:
            client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
            async with client:
                for _ in range(3):
                    neuron.then(
                        stream(
                            openai_chunk("Hel"),
                            openai_chunk("lo", "stop"),
                            openai_chunk(None, usage=True),
                            DONE,
                        )
                    )
                    pieces = [
                        c.choices[0].delta.content or ""
                        async for c in await client.chat.completions.create(
                            model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
                        )
                        if c.choices
                    ]
                    assert "".join(pieces) == "Hello"
                    neuron.then(whole(completion("whole")))
                    answer = await client.chat.completions.create(
                        model=MODEL, messages=[{"role": "user", "content": "hi"}]
                    )
                    assert answer.choices[0].message.content == "whole"
            await wait_for(lambda: len(gateway.finished()) == 6)
            events = gateway.finished()
    finally:
        await neuron.stop()
    assert all(e.status == 200 and e.node == "n1" for e in events)
    assert sum(e.direct for e in events) >= 4  # all but the requests that opened a neuron connection
    assert [e.completion_tokens for e in events] == [2] * 6
    assert [json.loads(body)["model"] for body in neuron.chats] == [MODEL] * 6


async def test_keys_and_routing_headers_are_honoured() -> None:
    """A request the lane's middleware would refuse or route by a header is the lane's."""
    auth = AuthSection(require_api_key=True, api_keys=[key_digest("client-key")])
    neuron = await RawNeuron().start()
    try:
        async with (
            served_gateway(neuron.url, config(True, auth=auth)) as gateway,
            Client(gateway.port) as client,
        ):
            good = {"authorization": "Bearer client-key"}
            await client.post(chat(), good)
            refused = await client.post(chat(), {"authorization": "Bearer wrong"})
            taken = await client.post(chat(), good)
            sessioned = await client.post(chat(), {**good, "x-session-id": "s1"})
            await wait_for(lambda: len(gateway.finished()) == 4)
            events = gateway.finished()
    finally:
        await neuron.stop()
    assert refused.status == 401 and json.loads(refused.body)["error"]["code"] == "invalid_api_key"
    assert taken.status == sessioned.status == 200
    assert [(e.status, e.direct) for e in events] == [(200, False), (401, False), (200, True), (200, False)]


async def test_a_router_decides_each_request_once() -> None:
    """With two replicas and a session router, a request is taken only when both nodes can be
    sent to at once, so one the direct path declines is never routed twice; the same key keeps
    its node on either path."""
    import cortex_routers.plugin

    neurons = [await RawNeuron().start(), await RawNeuron().start()]
    routing = RoutingSection(strategy="affinity")
    try:
        urls = {"n1": neurons[0].url, "n2": neurons[1].url}
        extra = (("routers", cortex_routers.plugin),)
        async with served_gateway(urls, config(True, routing=routing), extra) as gateway:
            keys = [f"session-{n % 6}" for n in range(36)]
            async with Client(gateway.port) as first, Client(gateway.port) as second:
                for n in range(0, len(keys), 2):
                    await asyncio.gather(
                        first.post(chat(prompt_cache_key=keys[n])),
                        second.post(chat(prompt_cache_key=keys[n + 1])),
                    )
            await wait_for(lambda: len(gateway.finished()) == len(keys))
            events = gateway.recorder.events
    finally:
        for neuron in neurons:
            await neuron.stop()
    finished = [e for e in events if isinstance(e, RequestFinished)]
    decided = [e for e in events if isinstance(e, RoutingDecided)]
    assert len(decided) == len(keys)  # one decision per request, whichever path took it
    assert any(e.direct for e in finished) and not all(e.direct for e in finished)
    node_of: dict[str, set[str]] = {}
    sent = [
        (json.loads(body)["prompt_cache_key"], name)
        for name, n in zip(("n1", "n2"), neurons, strict=True)
        for body in n.chats
    ]
    for key, name in sent:
        node_of.setdefault(key, set()).add(name)
    assert all(len(nodes) == 1 for nodes in node_of.values()), node_of
    assert {name for nodes in node_of.values() for name in nodes} == {"n1", "n2"}


async def test_a_console_capturing_chats_keeps_them_on_the_lane() -> None:
    """The console's capture watches the chat route, and a direct route cannot run it: with
    capture on, every chat goes through the lane and is captured."""
    import cortex_console.plugin

    neuron = await RawNeuron().start()
    try:
        extra = (("console", cortex_console.plugin),)
        tables = {"console": {"capture": True}}
        async with served_gateway(neuron.url, config(True), extra, tables) as gateway:
            async with Client(gateway.port) as client:
                for _ in range(3):
                    assert (await client.post(chat())).status == 200
            await wait_for(lambda: len(gateway.finished()) == 3)
            events = gateway.finished()
    finally:
        await neuron.stop()
    assert [e.direct for e in events] == [False, False, False]


async def test_a_body_over_the_limit_is_refused_by_the_lane() -> None:
    neuron = await RawNeuron().start()
    try:
        limited = CortexConfig(gateway=GatewaySection(max_body_bytes=1000))
        async with served_gateway(neuron.url, limited) as gateway, Client(gateway.port) as client:
            await client.post(chat())
            refused = await client.post(chat(padding="x" * 2000))
            taken = await client.post(chat(padding="x" * 500))
            await wait_for(lambda: len(gateway.finished()) == 3)
            events = gateway.finished()
    finally:
        await neuron.stop()
    assert refused.status == 413 and taken.status == 200
    assert [(e.status, e.direct) for e in events] == [(200, False), (413, False), (200, True)]


async def test_a_slow_client_pauses_the_neuron_and_loses_nothing() -> None:
    """A client that stops reading: the gateway stops reading the neuron (whose writes then
    block) instead of buffering the generation, and the whole body arrives once it reads."""
    frames = [delta("y" * 24000 + str(n)) for n in range(2000)]  # about 48 MB, past any socket buffer
    progress = {"written": 0}

    def flood() -> Action:
        async def act(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            writer.write(SSE_HEAD)
            for frame in frames:
                writer.write(chunk(frame))
                await writer.drain()
                progress["written"] += len(frame)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True

        return act

    neuron = await RawNeuron().start()
    try:
        async with served_gateway(neuron.url, config(True)) as gateway:
            reader, writer = await stream_after_warm_up(gateway.port, neuron, flood())
            transport = cast(asyncio.Transport, writer.transport)
            transport.pause_reading()  # the client stops reading
            await asyncio.sleep(1.0)
            stalled_at = progress["written"]
            await asyncio.sleep(0.5)
            assert progress["written"] == stalled_at  # the neuron is held back, not drained into memory
            assert stalled_at < len(b"".join(frames)) // 2
            transport.resume_reading()
            received = h11.Connection(h11.CLIENT)
            received.send(h11.Request(method="POST", target="/", headers=[("host", "g")]))
            received.send(h11.EndOfMessage())
            data = bytearray()
            while True:
                got = received.next_event()
                if got is h11.NEED_DATA:
                    received.receive_data(await asyncio.wait_for(reader.read(2**20), 20))
                elif isinstance(got, h11.Data):
                    data += got.data
                elif isinstance(got, h11.EndOfMessage):
                    break
            writer.close()
            await wait_for(lambda: len(gateway.finished()) == 2)
            event = gateway.finished()[-1]
    finally:
        await neuron.stop()
    assert bytes(data) == b"".join(frames)
    assert event.direct and event.status == 200


async def test_a_client_leaving_mid_stream_stops_the_generation() -> None:
    frames = [delta(str(n)) for n in range(400)]

    def paced() -> Action:
        async def act(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
            writer.write(SSE_HEAD)
            for frame in frames:
                writer.write(chunk(frame))
                await writer.drain()
                await asyncio.sleep(0.01)
            return False

        return act

    neuron = await RawNeuron().start()
    try:
        async with served_gateway(neuron.url, config(True)) as gateway:
            reader, writer = await stream_after_warm_up(gateway.port, neuron, paced())
            await reader.readuntil(b"data: ")  # the stream is flowing
            writer.close()
            await wait_for(lambda: neuron.hung_up >= 1 and len(gateway.finished()) == 2)
            event = gateway.finished()[-1]
    finally:
        await neuron.stop()
    assert event.direct and event.streamed and event.status == 200


async def test_a_drain_ends_a_direct_stream_with_an_error_event() -> None:
    """At the drain's cut-off an open stream ends with the shutdown error, as on the lane."""

    def endless() -> Action:
        async def act(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
            writer.write(SSE_HEAD)
            try:
                while True:
                    frame = delta("x")
                    writer.write(chunk(frame))
                    await writer.drain()
                    await asyncio.sleep(0.02)
            except ConnectionError:
                return False

        return act

    outcomes: dict[bool, tuple[Reply, RequestFinished]] = {}
    neuron = await RawNeuron().start()
    try:
        for direct in (True, False):
            async with served_gateway(neuron.url, config(direct)) as gateway, Client(gateway.port) as client:
                await client.post(chat())
                neuron.then(endless())
                pending = asyncio.ensure_future(client.post(chat()))
                await asyncio.sleep(0.2)
                gateway.kernel.drain.begin(0.4)  # the cut-off comes 0.1 s before the grace ends
                reply = await asyncio.wait_for(pending, 10)
                await wait_for(lambda: len(gateway.finished()) == 2)
                outcomes[direct] = (reply, gateway.finished()[-1])
    finally:
        await neuron.stop()
    for reply, event in outcomes.values():
        last = reply.body.rstrip(b"\n").split(b"\n\n")[-2]
        assert json.loads(last.removeprefix(b"data: "))["error"]["code"] == "shutting_down"
        assert reply.body.endswith(DONE) and event.error == "shutting_down"
    assert outcomes[True][1].direct and not outcomes[False][1].direct
    assert comparable(outcomes[True][1]) == comparable(outcomes[False][1])


async def test_a_bug_while_answering_is_a_500_not_a_hung_client(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Should the direct relay fail while answering, the client gets a 500 (or a cut, once its
    response began), the failure is logged and counted, and the gateway serves on."""
    neuron = await RawNeuron().start()
    try:
        async with served_gateway(neuron.url, config(True)) as gateway, Client(gateway.port) as client:
            await client.post(chat())

            def broken(self: NeuronReply) -> list[tuple[bytes, bytes]]:
                raise RuntimeError("a bug")

            with monkeypatch.context() as patch:
                patch.setattr(NeuronReply, "raw_headers", broken)
                failed = await client.post(chat())
            after = await client.post(chat())
            await wait_for(lambda: len(gateway.finished()) == 3)
            events = gateway.finished()
    finally:
        await neuron.stop()
    assert failed.status == 500 and json.loads(failed.body)["error"]["code"] == "internal_error"
    assert after.status == 200
    assert [(e.status, e.error) for e in events][1:] == [(500, "internal_error"), (200, None)]
    assert events[1].direct  # the failed neuron connection was dropped: the next one went by the lane
    assert "the direct relay of a request to n1 failed" in caplog.text


async def stream_after_warm_up(
    port: int, neuron: RawNeuron, action: Action
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw connection (a small receive buffer) that has sent a streamed chat the neuron answers
    with ``action``, after a warm-up request that left a neuron connection in the pool."""
    async with Client(port) as client:
        await client.post(chat())
    neuron.then(action)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**16)
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    body = json.dumps(chat()).encode()
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: g\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%b" % (len(body), body)
    )
    return reader, writer


async def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.01)
