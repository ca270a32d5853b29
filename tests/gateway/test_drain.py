"""Draining on SIGTERM: readiness turns 503 at once, and every stream still open at the end of the
grace ends with its dialect's error event (never a cut without an ending, never a traceback)."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from tests.daemons import Daemon, LineStream, http_json, wait_ready

pytestmark = pytest.mark.slow

# Greedy decoding of the tiny model never picks its end token, so a stream in a dialect without
# ``ignore_eos`` (Anthropic's) runs to max_tokens as surely as one with it.
LONG = {"max_tokens": 30000, "ignore_eos": True, "temperature": 0, "stream": True}
PROMPT = [{"role": "user", "content": "go"}]


def _read_to_end(stream: LineStream) -> list[str]:
    lines = []
    try:
        for line in stream:
            lines.append(line)
    except OSError as exc:  # a cut connection: what the fix forbids; keep what arrived
        lines.append(f"<cut: {exc}>")
    return lines


class ReadyProbe:
    """A load balancer's readiness probe that has begun its request before the signal.

    A kept-alive connection that is idle when the drain starts is closed, like any idle one, and
    a new connection is refused: both tell a balancer "not ready", but only a request already on
    its way can show the 503 the route answers while draining. So the head is sent in two parts:
    all but its last line before SIGTERM, the rest after the drain has begun.
    """

    def __init__(self, daemon: Daemon) -> None:
        parts = urlsplit(daemon.url)
        self.address = (parts.hostname, parts.port)
        self.socket = socket.create_connection(self.address, timeout=10)
        self.socket.sendall(b"GET /health/ready HTTP/1.1\r\nhost: probe\r\n")

    def finish(self) -> int:
        self._wait_for_the_drain()
        self.socket.sendall(b"\r\n")
        reply = http.client.HTTPResponse(self.socket)
        reply.begin()
        status = reply.status
        self.socket.close()
        return status

    def _wait_for_the_drain(self, timeout: float = 30.0) -> None:
        """Until the daemon has handled the signal: it begins the drain, then closes its listening
        sockets, so a new connection being refused shows the drain has begun. A connection the
        kernel queued just before the listener closed is reset instead of refused: that shows it
        too."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(self.address, timeout=5).close()
            except (ConnectionRefusedError, ConnectionResetError):
                return
            time.sleep(0.02)
        raise AssertionError(f"the daemon still accepts connections {timeout} s after the signal")


def test_streams_open_at_the_end_of_the_grace_end_with_their_error_event(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon]
) -> None:
    neuron = start_neuron(default_models='["tiny-chat"]')
    # The probe's head stays half-sent while both streams open (a prompt count comes before
    # message_start), which can outlast the default header_timeout_s on a loaded machine.
    limits = "[limits]\nheader_timeout_s = 120\n"
    gateway = start_gateway({"n1": neuron}, extra="shutdown_grace_s = 2\n" + limits)
    wait_ready(gateway)
    assert http_json("GET", f"{gateway.url}/health/live")[0] == 200
    probe = ReadyProbe(gateway)

    openai_stream = LineStream(
        f"{gateway.url}/v1/chat/completions", "POST", {"model": "tiny-chat", "messages": PROMPT, **LONG}
    )
    anthropic_stream = LineStream(
        f"{gateway.url}/v1/messages", "POST", {"model": "tiny-chat", "messages": PROMPT, **LONG}
    )
    # The Responses dialect has no ignore_eos; greedy, the tiny model runs to its limit anyway.
    responses_stream = LineStream(
        f"{gateway.url}/v1/responses",
        "POST",
        {"model": "tiny-chat", "input": "go", "max_output_tokens": 30000, "temperature": 0, "stream": True},
    )
    with openai_stream, anthropic_stream, responses_stream, ThreadPoolExecutor(3) as pool:
        assert openai_stream.status == 200 and anthropic_stream.status == 200
        assert responses_stream.status == 200
        openai_lines, anthropic_lines = iter(openai_stream), iter(anthropic_stream)
        assert next(openai_lines).startswith("data: ")
        assert next(anthropic_lines) == "event: message_start"
        assert next(iter(responses_stream)) == "event: response.created"
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        ready_status = probe.finish()
        openai_rest = pool.submit(_read_to_end, openai_stream)
        anthropic_rest = pool.submit(_read_to_end, anthropic_stream)
        responses_rest = pool.submit(_read_to_end, responses_stream)
        openai_tail, anthropic_tail = openai_rest.result(30), anthropic_rest.result(30)
        responses_tail = responses_rest.result(30)
    assert gateway.process.wait(15) == 0
    took = time.monotonic() - signalled

    assert ready_status == 503
    assert min(map(len, (openai_tail, anthropic_tail, responses_tail))) > 2, "a stream ended before the grace"
    assert took > 1.0  # they ran on into the grace and were ended near its end
    # OpenAI: an error frame, then [DONE].
    assert openai_tail[-1] == "data: [DONE]", openai_tail[-3:]
    error = json.loads(openai_tail[-2].removeprefix("data: "))["error"]
    assert error["code"] == "shutting_down", error
    # Anthropic: an error event (overloaded: the client may retry elsewhere) as the last event.
    assert anthropic_tail[-2] == "event: error", anthropic_tail[-3:]
    event = json.loads(anthropic_tail[-1].removeprefix("data: "))
    assert event["type"] == "error" and event["error"]["type"] == "overloaded_error", event
    # Responses: response.failed (rate_limit_exceeded: retry later) as the last event.
    assert responses_tail[-2] == "event: response.failed", responses_tail[-3:]
    failed = json.loads(responses_tail[-1].removeprefix("data: "))["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "rate_limit_exceeded", failed
    log = gateway.log_text()
    assert "Traceback" not in log and "CancelledError" not in log, log[-3000:]


def test_readiness_waits_for_a_first_successful_poll(start_gateway: Callable[..., Daemon]) -> None:
    gateway = start_gateway({"n1": type("Nowhere", (), {"url": "http://127.0.0.1:9"})()})
    assert http_json("GET", f"{gateway.url}/health/live")[0] == 200
    status, body, _ = http_json("GET", f"{gateway.url}/health/ready")
    assert (status, body["status"]) == (503, "starting")
    assert http_json("GET", f"{gateway.url}/health")[0] == 200  # /health keeps its old behaviour


def test_a_neuron_ends_its_own_streams_at_the_end_of_its_grace(start_neuron: Callable[..., Daemon]) -> None:
    neuron = start_neuron("shutdown_timeout_s = 2\n", default_models='["tiny-chat"]')
    wait_ready(neuron)
    assert http_json("GET", f"{neuron.url}/health/live")[0] == 200
    probe = ReadyProbe(neuron)
    body = {"model": "tiny-chat", "messages": PROMPT, **LONG}
    with LineStream(f"{neuron.url}/v1/chat/completions", "POST", body) as stream:
        lines = iter(stream)
        assert next(lines).startswith("data: ")
        assert neuron.process is not None
        neuron.process.send_signal(signal.SIGTERM)
        ready_status = probe.finish()
        tail = _read_to_end(stream)
    assert neuron.process.wait(30) == 0
    assert ready_status == 503
    assert tail[-1] == "data: [DONE]", tail[-3:]
    assert json.loads(tail[-2].removeprefix("data: "))["error"]["code"] == "shutting_down"
    assert "Traceback" not in neuron.log_text()
