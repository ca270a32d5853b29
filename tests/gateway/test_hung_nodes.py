"""A neuron that hangs (SIGSTOP: its sockets stay open, nothing answers) must not hold requests.

The gateway polls fast here (0.5 s, declared down after 2 failed polls), so a frozen node is
declared down about a second after it stops. From then on its loads are re-placed, requests
waiting for its first byte fail over, and its streams end with the dialect's error event. Every
frozen neuron is resumed in teardown, then stopped by its fixture.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.daemons import Daemon, LineStream, endless_stream, http_json, wait_ready

pytestmark = pytest.mark.slow

FAST_POLLS = "poll_interval_s = 0.5\npoll_timeout_s = 0.5\ndown_after_failures = 2\n"
DOWN_AFTER_S = 0.5 * 2  # poll interval x failure threshold


@pytest.fixture
def freeze() -> Iterator[Callable[[Daemon], None]]:
    """SIGSTOP a daemon; every daemon frozen here is resumed (SIGCONT) at teardown."""
    frozen: list[Daemon] = []

    def stop(daemon: Daemon) -> None:
        assert daemon.process is not None
        frozen.append(daemon)
        os.kill(daemon.process.pid, signal.SIGSTOP)

    yield stop
    for daemon in frozen:
        if daemon.alive():
            assert daemon.process is not None
            os.kill(daemon.process.pid, signal.SIGCONT)


def _ask(gateway: Daemon, model: str = "tiny-chat", timeout: float = 60.0) -> tuple[int, Any, dict[str, str]]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    return http_json("POST", f"{gateway.url}/v1/chat/completions", body, timeout=timeout)


def _states(neuron: Daemon) -> dict[str, str]:
    models = http_json("GET", f"{neuron.url}/health", timeout=5)[1]["models"]
    return {name: entry["state"] for name, entry in models.items()}


def _node_up(gateway: Daemon, name: str) -> bool:
    nodes = http_json("GET", f"{gateway.url}/admin/fleet", timeout=5)[1]["nodes"]
    up: bool = next(n for n in nodes if n["name"] == name)["up"]
    return up


def _when_down(gateway: Daemon, name: str, timeout: float = 20.0) -> float:
    """The monotonic time at which the gateway first showed ``name`` down."""
    deadline = time.monotonic() + timeout
    while _node_up(gateway, name):
        assert time.monotonic() < deadline, f"{name} was never declared down"
        time.sleep(0.05)
    return time.monotonic()


def test_a_node_frozen_during_a_cold_load_hands_its_waiters_to_a_healthy_node(
    start_neuron: Callable[..., Daemon],
    start_gateway: Callable[..., Daemon],
    freeze: Callable[[Daemon], None],
) -> None:
    first, second = start_neuron(), start_neuron()
    gateway = start_gateway({"n1": first, "n2": second}, extra=FAST_POLLS)
    answers: list[tuple[int, float]] = []

    def ask() -> None:
        status = _ask(gateway)[0]
        answers.append((status, time.monotonic()))

    # Placement tries n1 first (free fits go by name); freeze it while the load runs there.
    early = [threading.Thread(target=ask) for _ in range(3)]
    for thread in early:
        thread.start()
    deadline = time.monotonic() + 30
    while _states(first).get("tiny-chat") != "loading":
        assert time.monotonic() < deadline, "the load never reached n1"
        time.sleep(0.01)
    freeze(first)
    frozen_at = time.monotonic()
    _when_down(gateway, "n1")
    # Requests sent after the node was declared down are answered too.
    late = [threading.Thread(target=ask) for _ in range(2)]
    for thread in late:
        thread.start()
    for thread in early + late:
        thread.join(90)
    assert [status for status, _ in answers] == [200] * 5
    assert _states(second).get("tiny-chat") == "ready"
    # Declared down after DOWN_AFTER_S (plus a poll timeout), then n2's own load (a cold first
    # load there imports the harness: measured by n2 itself), plus slack for a loaded machine.
    models = http_json("GET", f"{second.url}/models", timeout=5)[1]["data"]
    load_s = next(m for m in models if m["id"] == "tiny-chat")["load_seconds"]
    took = max(at for _, at in answers) - frozen_at
    assert took < DOWN_AFTER_S + 0.5 + load_s + 10, (took, load_s)


def test_streams_on_a_frozen_node_end_with_the_error_event_once_it_is_declared_down(
    start_neuron: Callable[..., Daemon],
    start_gateway: Callable[..., Daemon],
    freeze: Callable[[Daemon], None],
) -> None:
    neuron = start_neuron()
    gateway = start_gateway({"n1": neuron}, extra=FAST_POLLS)
    assert _ask(gateway)[0] == 200
    openai_body = endless_stream("tiny-chat")
    anthropic_body = {
        "model": "tiny-chat",
        "messages": [{"role": "user", "content": "go"}],
        "max_tokens": 40000,
        # Greedy: the Anthropic API has no ignore_eos, and a sampled random model sometimes ended
        # its reply (end_turn) before the freeze; greedy, the reply is the same long one each run.
        "temperature": 0,
        "stream": True,
    }
    openai_stream = LineStream(f"{gateway.url}/v1/chat/completions", "POST", openai_body, timeout=60)
    anthropic_stream = LineStream(f"{gateway.url}/v1/messages", "POST", anthropic_body, timeout=60)
    ended: dict[str, tuple[float, list[str]]] = {}

    def read(name: str, stream: LineStream) -> None:
        lines = list(stream)
        ended[name] = (time.monotonic(), lines)

    readers = [
        threading.Thread(target=read, args=("openai", openai_stream)),
        threading.Thread(target=read, args=("anthropic", anthropic_stream)),
    ]
    try:
        # Both streams are generating (their heads came with the first event): freeze now, as
        # the tiny model finishes a whole generation within a second or two.
        freeze(neuron)
        assert openai_stream.status == 200 and anthropic_stream.status == 200
        for thread in readers:
            thread.start()
        down_at = _when_down(gateway, "n1")
        for thread in readers:
            thread.join(30)
        assert set(ended) == {"openai", "anthropic"}, "a stream on the frozen node was never ended"
    finally:
        openai_stream.close()
        anthropic_stream.close()
    at, lines = ended["openai"]
    assert at - down_at < 1.5  # within a second of being declared down (plus this test's polling)
    assert lines[-1] == "data: [DONE]", lines[-3:]
    frame = json.loads(lines[-2].removeprefix("data: "))
    assert "error" in frame, lines[-3:]
    error = frame["error"]
    assert error["code"] == "upstream_error" and "n1" in error["message"]
    at, lines = ended["anthropic"]
    assert at - down_at < 1.5
    assert lines[-2] == "event: error"
    assert json.loads(lines[-1].removeprefix("data: "))["type"] == "error"


def test_a_request_routed_to_a_node_that_then_freezes_fails_over(
    start_neuron: Callable[..., Daemon],
    start_gateway: Callable[..., Daemon],
    freeze: Callable[[Daemon], None],
) -> None:
    first, second = start_neuron(), start_neuron()
    gateway = start_gateway({"n1": first, "n2": second}, extra=FAST_POLLS)
    assert _ask(gateway)[0] == 200
    assert _states(first) == {"tiny-chat": "ready"} and _states(second) == {}
    freeze(first)
    started = time.monotonic()
    status, reply, _ = _ask(gateway)  # routed to n1, the only ready replica, before it is down
    assert status == 200, reply
    assert _states(second).get("tiny-chat") == "ready"
    assert time.monotonic() - started < DOWN_AFTER_S + 45


def test_a_frozen_node_that_resumes_rejoins_and_serves(
    start_neuron: Callable[..., Daemon],
    start_gateway: Callable[..., Daemon],
    freeze: Callable[[Daemon], None],
) -> None:
    """SIGCONT after the node was declared down: the next poll brings it back, its abandoned
    streams stay ended, and requests are routed to it again (it is the only node here)."""
    # The model is loaded before the gateway polls with its short timeout: a cold load through
    # the gateway can keep a neuron on a loaded machine from answering polls within 0.5 s, and
    # this test is about the rejoin, not the load.
    neuron = start_neuron(default_models='["tiny-chat"]')
    wait_ready(neuron, timeout=120)
    gateway = start_gateway({"n1": neuron}, extra=FAST_POLLS)
    assert _ask(gateway)[0] == 200
    freeze(neuron)
    _when_down(gateway, "n1")
    status, reply, _ = _ask(gateway, timeout=30)
    assert status == 503, reply  # no node at all now: an honest, retryable answer
    assert neuron.process is not None
    os.kill(neuron.process.pid, signal.SIGCONT)
    deadline = time.monotonic() + 20
    while not _node_up(gateway, "n1"):
        assert time.monotonic() < deadline, "n1 never came back"
        time.sleep(0.05)
    status, reply, _ = _ask(gateway)
    assert status == 200, reply
    assert _states(neuron) == {"tiny-chat": "ready"}
