"""Request classes in the neuron's admission queue, with real processes: a saturated neuron admits a
``main`` request before queued ``auxiliary`` ones, and no class waits past the documented bound."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from tests.daemons import Daemon, LineStream, endless_stream, http_json

pytestmark = pytest.mark.slow

# One slot, a long queue, a short bypass bound (so the bound is reached with a handful of requests).
ADMISSION = "[admission]\nmax_in_flight = 1\nmax_queued = 8\nmax_wait_s = 300.0\nmax_bypass = 2\n"


class Admissions:
    """Streamed requests on threads; each notes when its first token arrived, i.e. when the neuron
    admitted it (one slot: each begins only after the one before has finished generating)."""

    def __init__(self, url: str) -> None:
        self.url = urlsplit(url)
        self.order: list[tuple[float, str]] = []
        self.errors: list[str] = []
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()

    def send(self, label: str, headers: dict[str, str]) -> None:
        thread = threading.Thread(target=self._run, args=(label, headers), daemon=True)
        thread.start()
        self.threads.append(thread)

    def _run(self, label: str, headers: dict[str, str]) -> None:
        body = {
            "model": "tiny-chat",
            "messages": [{"role": "user", "content": label}],
            "max_tokens": 120,
            "ignore_eos": True,
            "temperature": 0,
            "stream": True,
        }
        assert self.url.hostname is not None
        connection = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=300)
        try:
            connection.request(
                "POST",
                "/v1/chat/completions",
                json.dumps(body),
                {"content-type": "application/json", **headers},
            )
            response = connection.getresponse()
            if response.status != 200:
                self.errors.append(f"{label}: {response.status} {response.read()!r}")
                return
            for line in response:
                if line.startswith(b"data: {"):
                    with self.lock:
                        self.order.append((time.monotonic(), label))
                    break
            response.read()
        except OSError as exc:
            self.errors.append(f"{label}: {exc}")
        finally:
            connection.close()

    def labels(self) -> list[str]:
        for thread in self.threads:
            thread.join(300)
        assert not self.errors, self.errors
        return [label for _, label in sorted(self.order)]


def wait_queued(neuron: Daemon, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        queued = http_json("GET", f"{neuron.url}/health")[1]["models"]["tiny-chat"]["queued"]
        if queued == count:
            return
        assert time.monotonic() < deadline, f"{queued} queued, never {count}"
        time.sleep(0.05)


def hold_the_slot(neuron: Daemon) -> LineStream:
    """A generation that runs until its client walks away; returns once it holds the only slot."""
    stream = LineStream(f"{neuron.url}/v1/chat/completions", "POST", endless_stream("tiny-chat"), timeout=60)
    next(iter(stream))
    return stream


def ready_neuron(start_neuron: Callable[..., Daemon]) -> Daemon:
    neuron = start_neuron(ADMISSION, default_models='["tiny-chat"]')
    deadline = time.monotonic() + 60
    while http_json("GET", f"{neuron.url}/health")[1]["models"].get("tiny-chat", {}).get("state") != "ready":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return neuron


def test_a_main_request_through_the_gateway_is_admitted_before_queued_auxiliary_ones(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon]
) -> None:
    """The class travels from Claude Code's header, through the gateway, to the neuron's queue: were
    it lost, every request would be ``main`` and the queue plain FIFO, so ``main`` would go last."""
    neuron = ready_neuron(start_neuron)
    gateway = start_gateway({"n1": neuron})
    holder = hold_the_slot(neuron)
    try:
        admissions = Admissions(gateway.url)
        for index in range(2):
            admissions.send(f"aux{index}", {"x-claude-code-request-class": "auxiliary"})
            wait_queued(neuron, index + 1)
        admissions.send("compaction", {"x-cortex-request-class": "Compaction"})
        wait_queued(neuron, 3)
        admissions.send("main", {"x-claude-code-request-class": "main"})
        wait_queued(neuron, 4)
    finally:
        holder.close()
    assert admissions.labels() == ["main", "compaction", "aux0", "aux1"]


def test_every_class_is_served_within_the_bypass_bound(start_neuron: Callable[..., Daemon]) -> None:
    """An ``auxiliary`` request queued first, then a stream of ``main`` ones: it is overtaken at
    most ``max_bypass`` (2) times, then served in arrival order (docs/neuron.md)."""
    neuron = ready_neuron(start_neuron)
    holder = hold_the_slot(neuron)
    try:
        admissions = Admissions(neuron.url)
        admissions.send("aux", {"x-cortex-request-class": "auxiliary"})
        wait_queued(neuron, 1)
        for index in range(4):
            admissions.send(f"main{index}", {"x-cortex-request-class": "main"})
            wait_queued(neuron, index + 2)
    finally:
        holder.close()
    assert admissions.labels() == ["main0", "main1", "aux", "main2", "main3"]
