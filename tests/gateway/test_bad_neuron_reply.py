"""A neuron whose control-plane replies have the wrong types: a counted poll failure for that node,
never a gateway that fails to start or stops polling the others."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.daemons import Daemon, http_json

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).with_name("cortex-kernel"))

DISCOVERY = {"hostname": "bad", "os": "Linux", "kernel": "6", "python": "3", "devices": [], "harnesses": []}
HEALTH = {"status": "ok", "models": {}, "lifecycle_cycles": 0, "memory": {}, "devices": []}
WRONG_TYPED_MODELS = {
    "object": "list",
    "data": [{"id": "tiny-chat", "state": "ready", "in_flight": "many", "queued": 0}],
}


class WrongTypedNeuron:
    """A test double of a neuron whose ``/models`` carries ``"in_flight": "many"``; its other
    replies are well formed, so only the wrong type is on trial."""

    def __init__(self, replies: dict[str, object]) -> None:
        replies_bytes = {path: json.dumps(body).encode() for path, body in replies.items()}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = replies_bytes.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def wrong_typed_neuron() -> Iterator[WrongTypedNeuron]:
    double = WrongTypedNeuron({"/discovery": DISCOVERY, "/health": HEALTH, "/models": WRONG_TYPED_MODELS})
    yield double
    double.close()


def test_a_wrong_typed_reply_is_a_failed_poll_of_that_node_only(
    start_neuron: Callable[..., Daemon],
    start_gateway: Callable[..., Daemon],
    wrong_typed_neuron: WrongTypedNeuron,
) -> None:
    good = start_neuron(default_models='["tiny-chat"]')
    gateway = start_gateway({"bad": wrong_typed_neuron, "good": good})

    body = {"model": "tiny-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    status, reply, _ = http_json("POST", f"{gateway.url}/v1/chat/completions", body, timeout=120)
    assert status == 200, reply

    deadline = time.monotonic() + 30
    while True:
        nodes = {n["name"]: n for n in http_json("GET", f"{gateway.url}/admin/fleet")[1]["nodes"]}
        if nodes["bad"]["failures"] >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    bad, good_node = nodes["bad"], nodes["good"]
    assert good_node["up"] and good_node["last_error"] is None
    assert not bad["up"] and bad["failures"] >= 2  # polling goes on, and every bad reply counts
    assert "/models" in bad["last_error"] and "in_flight" in bad["last_error"], bad["last_error"]

    shown = subprocess.run(
        [CLI, "status", "--endpoint", gateway.url], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "in_flight" in shown and "bad" in shown
    assert "Traceback" not in gateway.log_text()


async def test_the_poll_failed_event_carries_the_reason(wrong_typed_neuron: WrongTypedNeuron) -> None:
    import aiohttp

    from cortex_gateway.fleet import Fleet, Node
    from cortex_gateway.poller import Poller
    from cortex_kernel.events import EventBus, PollFailed

    class Recorder:
        def __init__(self) -> None:
            self.events: list[object] = []

        def handle(self, event: object) -> None:
            self.events.append(event)

    recorder = Recorder()
    node = Node(name="bad", endpoint=wrong_typed_neuron.url)
    async with aiohttp.ClientSession() as session:
        poller = Poller(Fleet([node]), session, {}, timeout_s=5.0, events=EventBus([recorder]))
        await poller.poll_once()
    failed = [e for e in recorder.events if isinstance(e, PollFailed)]
    assert len(failed) == 1 and failed[0].node == "bad"
    assert "/models" in failed[0].reason and "in_flight" in failed[0].reason
    assert not node.up and node.failures == 1


@pytest.fixture
def wrong_typed_discovery() -> Iterator[WrongTypedNeuron]:
    discovery = {**DISCOVERY, "devices": [{"index": "zero", "memory_total_bytes": 1}]}
    models = {"object": "list", "data": []}
    double = WrongTypedNeuron({"/discovery": discovery, "/health": HEALTH, "/models": models})
    yield double
    double.close()


async def test_a_wrong_typed_discovery_is_a_logged_poll_failure(
    wrong_typed_discovery: WrongTypedNeuron, caplog: pytest.LogCaptureFixture
) -> None:
    import aiohttp

    from cortex_gateway.fleet import Fleet, Node
    from cortex_gateway.poller import Poller

    node = Node(name="bad", endpoint=wrong_typed_discovery.url)
    async with aiohttp.ClientSession() as session:
        poller = Poller(Fleet([node]), session, {}, timeout_s=5.0)
        await poller.poll_once()
    assert not node.up and node.failures == 1 and node.discovery is None and node.devices() == []
    assert node.last_error is not None and "/discovery" in node.last_error
    warned = [r.getMessage() for r in caplog.records if r.name == "cortex_gateway.poller"]
    assert any("bad" in message and "devices" in message for message in warned), warned
