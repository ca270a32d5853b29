"""The console's hub and event stream in-process: bounded memory, one encoding per flush, and a
console that stops reading dropped rather than buffered for."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.types import Message

from cortex_console.guard import AdminCheck
from cortex_console.hub import FLUSH_DELAY_S, QUEUE_BATCHES, ConsoleHub, Subscriber
from cortex_console.routes import EventStream
from cortex_console.settings import ConsoleSettings
from cortex_kernel.config.schema import AuthSection
from cortex_kernel.drain import Drain
from cortex_kernel.events import (
    FleetPolled,
    ModelLoaded,
    ModelSnapshot,
    ModelUnloaded,
    NodeSnapshot,
    RequestFinished,
)


def finished(i: int) -> RequestFinished:
    return RequestFinished(
        dialect="openai",
        endpoint="/v1/chat/completions",
        model="m",
        node="n1",
        status=200,
        duration_s=0.01 * i,
    )


def test_rings_are_bounded_and_hold_no_text() -> None:
    hub = ConsoleHub(ConsoleSettings(recent_requests=5, activity_events=3))
    for i in range(50):
        hub.handle(finished(i))
        hub.handle(ModelUnloaded(node="n1", model=f"m{i}", reason="evicted", strategy="lru"))
    assert len(hub.requests) == 5 and len(hub.activity) == 3
    assert hub.activity[-1]["victim"] == "m49" and hub.activity[-1]["reason"] == "lru"
    assert set(hub.requests[-1]) >= {"model", "node", "dialect", "status", "first_token_s", "duration_s"}
    assert not {"prompt", "reply", "messages"} & set(hub.requests[-1])


async def test_one_flush_sends_everything_since_the_last_to_every_console() -> None:
    hub = ConsoleHub(ConsoleSettings())
    consoles = [hub.subscribe() for _ in range(3)]
    for console in consoles:
        assert (await console.queue.get()).startswith(b"event: snapshot\n")
    for i in range(10):
        hub.handle(finished(i))
    hub.handle(ModelLoaded(node="n1", model="m", seconds=1.0, ok=True))
    chunks = [await asyncio.wait_for(console.queue.get(), FLUSH_DELAY_S * 10) for console in consoles]
    assert all(c is chunks[0] for c in chunks)  # encoded once, shared
    assert all(console.queue.empty() for console in consoles)
    batch = json.loads(chunks[0].split(b"data: ", 1)[1])
    assert [m["kind"] for m in batch].count("request") == 10
    assert any(m["kind"] == "activity" and m["entry"]["kind"] == "loaded" for m in batch)


async def test_a_console_that_stops_reading_is_dropped_and_its_queue_stays_bounded() -> None:
    hub = ConsoleHub(ConsoleSettings())
    stalled = hub.subscribe()  # never read from
    for i in range(QUEUE_BATCHES * 3):
        hub.handle(finished(i))
        hub.flush()
        assert stalled.queue.qsize() <= QUEUE_BATCHES
    assert stalled.gone.is_set() and stalled not in hub.subscribers and hub.dropped == 1


async def test_the_stream_ends_when_its_client_is_dropped_even_mid_write() -> None:
    hub = ConsoleHub(ConsoleSettings())
    stream = EventStream(hub, AdminCheck(AuthSection()), Drain())
    sent: list[Message] = []
    blocked = asyncio.Event()

    async def send(message: Message) -> None:
        sent.append(message)
        if len(sent) >= 2:  # the client's socket is full: every write after the head blocks forever
            blocked.set()
            await asyncio.Event().wait()

    async def receive() -> Message:
        await asyncio.Event().wait()  # the client never hangs up
        return {}

    scope = {"type": "http", "path": "/console/api/stream", "headers": [], "client": ("127.0.0.1", 1)}
    task = asyncio.get_running_loop().create_task(stream(scope, receive, send))
    await asyncio.wait_for(blocked.wait(), 10)
    for i in range(QUEUE_BATCHES + 5):
        hub.handle(finished(i))
        hub.flush()
    await asyncio.wait_for(task, 10)  # returned: the server closes the connection
    assert not hub.subscribers and hub.dropped == 1


def test_the_fleet_view_marks_pins_and_logs_loading_and_node_changes() -> None:
    hub = ConsoleHub(ConsoleSettings(), pins={"m": ["n1"]})

    def polled(up: bool, state: str) -> FleetPolled:
        model = ModelSnapshot(model="m", state=state, in_flight=0, queued=0)
        return FleetPolled(nodes=(NodeSnapshot(node="n1", up=up, draining=False, models=(model,)),))

    hub.handle(polled(True, "loading"))
    hub.handle(polled(True, "ready"))
    hub.handle(polled(False, "ready"))
    assert hub.fleet[0]["models"][0]["pinned"] is True
    assert [a["kind"] for a in hub.activity] == ["loading", "node_down"]


@pytest.mark.parametrize(
    ("headers", "client", "status"),
    [
        ([], ("127.0.0.1", 1), None),
        ([], ("10.1.2.3", 1), 403),
    ],
)
def test_without_admin_keys_only_loopback_may_watch(
    headers: list[tuple[bytes, bytes]], client: tuple[str, int], status: int | None
) -> None:
    verdict = AdminCheck(AuthSection()).verdict({"headers": headers, "client": client})
    assert (verdict.status if verdict else None) == status


def test_a_failed_load_shows_its_reason_in_the_fleet_and_the_activity_log() -> None:
    hub = ConsoleHub(ConsoleSettings())
    model = ModelSnapshot(model="m", state="loading", in_flight=0, queued=0)
    hub.handle(FleetPolled(nodes=(NodeSnapshot(node="n1", up=True, draining=False, models=(model,)),)))
    hub.handle(ModelLoaded(node="n1", model="m", seconds=0.5, ok=False, error="out of memory on cuda:0"))
    assert hub.fleet[0]["models"][0]["state"] == "failed"
    assert hub.fleet[0]["models"][0]["error"] == "out of memory on cuda:0"
    assert hub.activity[-1]["kind"] == "load_failed" and "out of memory" in hub.activity[-1]["text"]


def test_a_model_new_to_a_polled_node_is_added_by_a_load_and_by_its_event() -> None:
    """A load the console saw an admin start, or a load event, for a model the last poll did not
    list on that node: the row gains it (the snapshot's tuple of models once made this raise,
    which failed the admin call that had already succeeded)."""
    hub = ConsoleHub(ConsoleSettings())
    other = ModelSnapshot(model="other", state="ready", in_flight=0, queued=0)
    hub.handle(FleetPolled(nodes=(NodeSnapshot(node="n1", up=True, draining=False, models=(other,)),)))
    hub.admin_answered("/admin/models/load", 202, {"state": "loading", "node": "n1", "model": "m"})
    assert [(m["model"], m["state"]) for m in hub.fleet[0]["models"]] == [
        ("other", "ready"),
        ("m", "loading"),
    ]
    hub.handle(ModelLoaded(node="n1", model="fresh", seconds=0.5, ok=True))
    assert [m["model"] for m in hub.fleet[0]["models"]] == ["other", "m", "fresh"]


@pytest.mark.parametrize("turns", range(4))
async def test_a_stream_writer_cancelled_as_a_batch_arrives_stops(turns: int) -> None:
    """A writer cancelled in the loop turns between a batch's arrival and its resuming must stop.

    The writer waited for a batch with ``asyncio.wait_for``, which on Python 3.11 returns the
    batch and drops a cancellation landing in that window. The stream, ending because its client
    left, cancels its writer and awaits it: the writer went on writing keep-alives to the closed
    socket every 15 s and the request never ended. The soak's hostile traffic left a few such
    streams per 10,000 requests, each holding its connection, for the rest of the run.
    """
    hub = ConsoleHub(ConsoleSettings())
    stream = EventStream(hub, AdminCheck(AuthSection()), Drain())
    subscriber = Subscriber()
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    writer = asyncio.get_running_loop().create_task(stream._write(subscriber, send))
    for _ in range(5):  # the writer now waits for a batch
        await asyncio.sleep(0)
    subscriber.offer(b"event: batch\ndata: []\n\n")
    for _ in range(turns):
        await asyncio.sleep(0)
    writer.cancel()
    done, _ = await asyncio.wait([writer], timeout=2)
    assert writer in done and writer.cancelled()
