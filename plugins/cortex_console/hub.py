"""The console's memory of the gateway: an event sink that keeps bounded rings and feeds streams.

Events arrive synchronously on the event loop, once per request and per lifecycle change, so
``handle`` only appends to bounded deques and marks a flush as due. One flush, a fraction of a
second later, encodes everything that happened since once and hands the same bytes to every open
console stream: the cost per request does not grow with the number of consoles watching.

Each stream has a bounded queue. A console that stops reading fills it; it is then dropped (its
stream ends) rather than allowed to make the gateway buffer events for it without limit.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import msgspec

from cortex_console.settings import ConsoleSettings
from cortex_kernel.events import (
    DefragRestarted,
    Event,
    FleetPolled,
    ModelLoaded,
    ModelUnloaded,
    PollFailed,
    RequestFinished,
)

FLUSH_DELAY_S = 0.5
QUEUE_BATCHES = 64

_encode = msgspec.json.Encoder().encode


class Subscriber:
    """One open console stream: a bounded queue of encoded batches, and whether it was dropped."""

    def __init__(self, size: int = QUEUE_BATCHES) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=size)
        self.gone = asyncio.Event()

    def offer(self, chunk: bytes) -> bool:
        """Queue ``chunk``; False (and the subscriber marked gone) when the client fell behind."""
        try:
            self.queue.put_nowait(chunk)
        except asyncio.QueueFull:
            self.gone.set()
            return False
        return True


def sse(kind: str, payload: Any) -> bytes:
    """One server-sent event."""
    return b"event: " + kind.encode() + b"\ndata: " + _encode(payload) + b"\n\n"


class ConsoleHub:
    """Satisfies :class:`cortex_kernel.events.EventSink`; one per gateway."""

    def __init__(
        self,
        section: ConsoleSettings,
        pins: dict[str, list[str]] | None = None,
        catalogue: list[dict[str, Any]] | None = None,
    ) -> None:
        self.section = section
        self.pins = pins or {}
        self.catalogue = catalogue or []
        self.activity: deque[dict[str, Any]] = deque(maxlen=section.activity_events)
        self.requests: deque[dict[str, Any]] = deque(maxlen=section.recent_requests)
        self.captures: deque[dict[str, Any]] = deque(maxlen=section.recent_requests)
        self.fleet: list[dict[str, Any]] = []
        self.states: dict[tuple[str, str], tuple[str, float]] = {}
        self.failures: dict[tuple[str, str], str] = {}  # why the last load of a model failed
        self.subscribers: set[Subscriber] = set()
        self.dropped = 0
        self._pending: list[dict[str, Any]] = []
        self._flush: asyncio.TimerHandle | None = None

    # -- the sink ---------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        now = time.time()
        if isinstance(event, FleetPolled):
            self._fleet(event, now)
            return
        if isinstance(event, RequestFinished):
            # Without its gaps (64 floats for a 64-token stream), which the console never shows:
            # converted and then dropped, they were a share of a paced stream's CPU (issue #17).
            row = {"at": now, **msgspec.to_builtins(msgspec.structs.replace(event, inter_token_s=()))}
            row.pop("inter_token_s", None)
            self.requests.append(row)
            self._push({"kind": "request", "request": row})
            return
        entry = self._activity(event, now)
        if entry is not None:
            self.log(entry)

    def _activity(self, event: Event, now: float) -> dict[str, Any] | None:
        if isinstance(event, ModelLoaded):
            state = "ready" if event.ok else "failed"
            verb = "loaded" if event.ok else "failed to load"
            text = f"{event.model} {verb} on {event.node} in {event.seconds:.1f} s"
            if event.ok:
                self.failures.pop((event.node, event.model), None)
            else:
                self.failures[(event.node, event.model)] = event.error or "no reason given"
                text += f": {self.failures[(event.node, event.model)]}"
            self.states[(event.node, event.model)] = (state, now)
            self._set_model_state(event.node, event.model, state)
            return {
                "kind": "loaded" if event.ok else "load_failed",
                "node": event.node,
                "model": event.model,
                "text": text,
            }
        if isinstance(event, ModelUnloaded):
            self.states.pop((event.node, event.model), None)
            self._drop_model(event.node, event.model)
            if event.reason == "evicted":
                how = f" by {event.strategy}" if event.strategy else ""
                text = f"evicted {event.model} from {event.node}{how} to make room"
                return {
                    "kind": "evicted",
                    "node": event.node,
                    "model": event.model,
                    "victim": event.model,
                    "reason": event.strategy or "evicted",
                    "text": text,
                }
            return {
                "kind": "unloaded",
                "node": event.node,
                "model": event.model,
                "text": f"{event.model} unloaded from {event.node}",
            }
        if isinstance(event, PollFailed):
            return {
                "kind": "poll_failed",
                "node": event.node,
                "reason": event.reason or event.error,
                "text": f"poll of {event.node} failed: {event.reason or event.error}",
            }
        if isinstance(event, DefragRestarted):
            return {"kind": "defrag", "node": event.node, "text": f"{event.node} restarted to defragment"}
        return None

    def log(self, entry: dict[str, Any]) -> None:
        """Add one line to the activity log and push it to every console."""
        entry = {"at": time.time(), **entry}
        self.activity.append(entry)
        self._push({"kind": "activity", "entry": entry})

    def capture(self, entry: dict[str, Any]) -> None:
        """Keep one captured exchange (only called when ``[console] capture`` is on)."""
        entry = {"at": time.time(), **entry}
        self.captures.append(entry)
        self._push({"kind": "capture", "capture": entry})

    def admin_answered(self, path: str, status: int, body: dict[str, Any]) -> None:
        """An admin call succeeded: show a load it started and a drain it set, without waiting."""
        if path == "/admin/models/load" and status == 202 and body.get("state") == "loading":
            node, model = str(body.get("node")), str(body.get("model"))
            self.states[(node, model)] = ("loading", time.time())
            self._set_model_state(node, model, "loading")
            self.log({"kind": "loading", "node": node, "model": model, "text": f"{model} loading on {node}"})
        elif path.startswith("/admin/nodes/") and path.endswith("/drain") and "draining" in body:
            node, draining = str(body.get("name")), bool(body["draining"])
            for row in self.fleet:
                if row["node"] == node:
                    row["draining"] = draining
            self.log(
                {
                    "kind": "drain" if draining else "undrain",
                    "node": node,
                    "text": f"{node} {'draining' if draining else 'taking requests again'}",
                }
            )
        else:
            return
        self.flush()  # an operator is watching for this: no coalescing delay

    # -- the fleet ---------------------------------------------------------------------------

    def _fleet(self, event: FleetPolled, now: float) -> None:
        before = {(n["node"], m["model"]): m["state"] for n in self.fleet for m in n["models"]}
        up_before = {n["node"]: n["up"] for n in self.fleet}
        nodes = []
        seen: set[tuple[str, str]] = set()
        for node in event.nodes:
            row = msgspec.to_builtins(node)
            row["models"] = list(row["models"])  # a tuple in the snapshot; the console edits it
            for model in row["models"]:
                key = (node.node, model["model"])
                seen.add(key)
                state = model["state"]
                if self.states.get(key, ("", 0.0))[0] != state:
                    self.states[key] = (state, now)
                model["since"] = self.states[key][1]
                model["pinned"] = node.node in self.pins.get(model["model"], [])
                if state == "failed":
                    model["error"] = self.failures.get(key)
                if before.get(key) != state and state in ("loading", "waking", "sleeping", "unloading"):
                    self.log(
                        {
                            "kind": state,
                            "node": node.node,
                            "model": model["model"],
                            "text": f"{model['model']} {state} on {node.node}",
                        }
                    )
            if node.node in up_before and up_before[node.node] != node.up:
                self.log(
                    {
                        "kind": "node_up" if node.up else "node_down",
                        "node": node.node,
                        "text": f"{node.node} is {'up' if node.up else 'down'}"
                        + ("" if node.up else f": {node.last_error or 'no answer'}"),
                    }
                )
            nodes.append(row)
        for key in [k for k in self.states if k not in seen]:
            del self.states[key]
        self.fleet = nodes
        self._push({"kind": "fleet", "nodes": nodes, "at": now})

    def _set_model_state(self, node: str, model: str, state: str) -> None:
        for row in self.fleet:
            if row["node"] == node:
                for entry in row["models"]:
                    if entry["model"] == model:
                        entry["state"], entry["since"] = state, time.time()
                        entry["error"] = self.failures.get((node, model)) if state == "failed" else None
                        break
                else:
                    row["models"] = list(row["models"])
                    row["models"].append(
                        {
                            "model": model,
                            "state": state,
                            "in_flight": 0,
                            "queued": 0,
                            "last_used": None,
                            "since": time.time(),
                            "pinned": node in self.pins.get(model, []),
                            "error": self.failures.get((node, model)) if state == "failed" else None,
                        }
                    )
                self._push({"kind": "fleet", "nodes": self.fleet, "at": time.time()})

    def _drop_model(self, node: str, model: str) -> None:
        for row in self.fleet:
            if row["node"] == node:
                row["models"] = [m for m in row["models"] if m["model"] != model]
                self._push({"kind": "fleet", "nodes": self.fleet, "at": time.time()})

    # -- streams -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything a console shows, for a console that has just connected."""
        return {
            "nodes": self.fleet,
            "catalogue": self.catalogue,
            "activity": list(self.activity),
            "requests": list(self.requests),
            "captures": list(self.captures),
            "capture": self.section.capture,
            "clients": len(self.subscribers),
            "dropped": self.dropped,
            "now": time.time(),
        }

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber()
        subscriber.offer(sse("snapshot", self.snapshot()))
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def _push(self, message: dict[str, Any]) -> None:
        if not self.subscribers:
            return
        if message["kind"] == "fleet":  # only the newest fleet matters
            self._pending = [m for m in self._pending if m["kind"] != "fleet"]
        self._pending.append(message)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(FLUSH_DELAY_S, self.flush)

    def flush(self) -> None:
        """Send what happened since the last flush to every console, encoded once."""
        if self._flush is not None:
            self._flush.cancel()
        self._flush = None
        pending, self._pending = self._pending, []
        if not pending:
            return
        chunk = sse("batch", pending)
        self.deliver(chunk, list(self.subscribers))

    def deliver(self, chunk: bytes, subscribers: Iterable[Subscriber]) -> None:
        for subscriber in subscribers:
            if not subscriber.offer(chunk):
                self.subscribers.discard(subscriber)
                self.dropped += 1
