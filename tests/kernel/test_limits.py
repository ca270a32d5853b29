"""Connection limits on both daemons, over raw sockets: floods, slow requests, smuggling, h2c.

Each daemon here is real (``tests/daemons.py``); the bounds are configured short so the tests
run in seconds, and every assertion on time is a generous bound on a fault, not a speed claim.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemons import Daemon
from tests.floods import connect_and_close_flood, open_descriptors, probe, start_daemon

pytestmark = pytest.mark.slow

SHORT = "[limits]\nheader_timeout_s = 1.0\nbody_timeout_s = 2.0\nkeep_alive_timeout_s = 1.5\n"
KINDS = ["gateway", "neuron"]


@pytest.fixture(scope="module", params=KINDS)
def daemon(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon of each kind with short limits, shared by the tests that leave it as they found it."""
    started = start_daemon(request.param, tmp_path_factory.mktemp(request.param), SHORT)
    yield started
    started.kill()


def connect(daemon: Daemon, data: bytes = b"", timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=timeout)
    if data:
        sock.sendall(data)
    return sock


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes; fails the test if it never does."""
    sock.settimeout(timeout)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length body, leaving the connection open."""
    sock.settimeout(10)
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += sock.recv(65536)
    head, _, body = raw.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return raw


def responses(raw: bytes) -> list[int]:
    """The status codes of every response in ``raw``."""
    return [int(line.split()[1]) for line in raw.split(b"\r\n") if line.startswith(b"HTTP/1.")]


def error_envelope(raw: bytes) -> dict[str, object]:
    _, _, body = raw.partition(b"\r\n\r\n")
    decoded = json.loads(body)
    assert set(decoded) == {"error"}
    error: dict[str, object] = decoded["error"]
    return error


# -- peer close, keep-alive, connection cap, descriptor exhaustion -----------------------------


def test_a_connection_the_peer_closed_is_released_at_once(daemon: Daemon) -> None:
    assert daemon.process is not None
    before = open_descriptors(daemon.process.pid)
    for _ in range(100):
        connect(daemon).close()
    deadline = time.monotonic() + 5
    while open_descriptors(daemon.process.pid) > before + 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    # Without the fix each one sat in CLOSE-WAIT for the whole keep-alive timeout.
    assert open_descriptors(daemon.process.pid) <= before + 5


def test_an_idle_keep_alive_connection_is_closed_after_its_bound(daemon: Daemon) -> None:
    with connect(daemon, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n") as sock:
        started = time.monotonic()
        raw = read_until_closed(sock, timeout=10)
        assert responses(raw) == [200]
        assert time.monotonic() - started < 6  # keep_alive_timeout_s = 1.5


def test_a_silent_connection_is_closed_without_an_answer_after_the_head_bound(daemon: Daemon) -> None:
    with connect(daemon) as sock:
        started = time.monotonic()
        assert read_until_closed(sock) == b""
        assert time.monotonic() - started < 6  # header_timeout_s = 1


def test_a_head_dripped_past_its_bound_gets_408_and_a_close(daemon: Daemon) -> None:
    with connect(daemon, b"GET /health HTTP/1.1\r\nHo") as sock:
        raw = read_until_closed(sock)
    assert responses(raw) == [408]
    assert error_envelope(raw)["code"] == "request_timeout"


def test_a_kept_alive_connection_gets_the_head_bound_from_its_next_requests_first_byte(
    daemon: Daemon,
) -> None:
    with connect(daemon, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n") as sock:
        assert responses(read_response(sock)) == [200]
        sock.sendall(b"GET /hea")
        raw = read_until_closed(sock)
    assert responses(raw) == [408]


@pytest.mark.parametrize("kind", KINDS)
def test_connections_over_the_cap_are_refused_at_once(kind: str, tmp_path: Path) -> None:
    capped = start_daemon(kind, tmp_path, "[limits]\nmax_connections = 4\n")
    try:
        held = []
        # The probe the fixture used to wait for health may still be closing; let it go.
        time.sleep(0.3)
        for _ in range(4):
            sock = connect(capped, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            read_response(sock)
            held.append(sock)
        with connect(capped, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5) as refused:
            assert read_until_closed(refused, timeout=5) == b""
        for sock in held:
            sock.close()
        time.sleep(0.3)
        assert probe(f"{capped.url}/health", timeout=5) < 5
    finally:
        capped.kill()


@pytest.mark.parametrize("kind", KINDS)
def test_a_connect_and_close_flood_never_stops_the_daemon_answering(kind: str, tmp_path: Path) -> None:
    """300 connections a second against a 1,024-descriptor limit: before the fix the daemon ran out
    of descriptors within seconds, stopped answering and logged a traceback per failed accept."""
    flooded = start_daemon(kind, tmp_path, nofile=1024)
    try:
        report = connect_and_close_flood(flooded, rate=300, seconds=10)
        print(report.summary())
        assert flooded.alive()
        # The failure this guards against is a probe refused or never answered; a bound well
        # above a healthy probe's milliseconds keeps a loaded CI machine's pauses out of it.
        assert report.failed_probes(bound_s=3.0) == 0, report.summary()
        assert report.log_lines <= 3, flooded.log_text()[-3000:]
        assert report.peak_descriptors < 1024 // 2
    finally:
        flooded.kill()


# -- slow bodies -------------------------------------------------------------------------------


def test_slow_bodies_are_answered_408_and_closed_within_the_bound_while_probes_stay_fast(
    daemon: Daemon,
) -> None:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n{"
    )
    sockets = [connect(daemon, head) for _ in range(200)]
    started = time.monotonic()
    stop = threading.Event()

    def drip() -> None:
        while not stop.is_set():
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.send(b" ")
            time.sleep(0.2)

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        probes = []
        while time.monotonic() - started < 2.5:
            probes.append(probe(f"{daemon.url}/health", timeout=5))
            time.sleep(0.1)
        answers = [read_until_closed(sock, timeout=10) for sock in sockets]
        closed_after = time.monotonic() - started
    finally:
        stop.set()
        dripper.join(5)
        for sock in sockets:
            sock.close()
    # A starved server lets a probe run into its 5 s timeout behind the slow bodies;
    # a healthy probe takes milliseconds, so 3 s separates the two with room for a loaded machine.
    assert max(probes) < 3.0, probes
    assert all(responses(raw) == [408] for raw in answers), answers[0]
    assert error_envelope(answers[0])["code"] == "request_timeout"
    assert closed_after < 2.0 + 8  # body_timeout_s = 2, generous slack for a loaded machine
    assert "Traceback" not in daemon.log_text()


def test_a_client_that_leaves_during_its_upload_leaves_no_traceback(daemon: Daemon) -> None:
    paths = ["/v1/chat/completions"] + (["/v1/messages"] if "serve" in daemon.args else [])
    for path in paths:
        for _ in range(10):
            head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
            with connect(daemon, head.encode() + b'{"model": "m", "mess') as sock:
                time.sleep(0.05)
                sock.shutdown(socket.SHUT_WR)
    time.sleep(1.0)
    assert daemon.alive()
    log = daemon.log_text()
    assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]


def test_an_answer_given_before_the_body_arrived_reaches_a_client_still_sending(daemon: Daemon) -> None:
    """A body refused unread (over the size limit) is answered, and the connection lingers.

    Closing at once, with the client's bytes unread, makes the kernel reset the connection: the
    client, still writing, then gets a broken pipe instead of the 413 (as CI once saw).
    """
    declared = 1024 * 1024 * 1024
    for _ in range(3):
        head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n"
        with connect(daemon, head.encode()) as sock:
            sock.sendall(b" " * (8 * 1024 * 1024))  # the rest of the upload is never sent
            sock.shutdown(socket.SHUT_WR)
            raw = read_until_closed(sock)
        assert responses(raw) in ([413], [401]), raw[:300]
    assert daemon.alive()


# -- request smuggling shapes ------------------------------------------------------------------


SECOND = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


def test_content_length_with_transfer_encoding_is_refused_and_the_hidden_request_never_answered(
    daemon: Daemon,
) -> None:
    body = b"0\r\n\r\n" + SECOND
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        + body
    )
    with connect(daemon, request) as sock:
        raw = read_until_closed(sock)
    assert responses(raw) == [400]
    assert error_envelope(raw)["code"] == "bad_framing"


def test_chunked_http_1_0_is_refused(daemon: Daemon) -> None:
    request = b"GET /health HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    with connect(daemon, request) as sock:
        raw = read_until_closed(sock)
    assert responses(raw) == [400]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (b"Transfer-Encoding: gzip, chunked\r\n", 400),
        (b"Transfer-Encoding: identity\r\n", 400),
        (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 400),
        (b"Content-Length: 2\r\nContent-Length: 3\r\n", 400),
        (b"Content-Length: 2, 3\r\n", 400),
        (b"Content-Length: -2\r\n", 400),
    ],
)
def test_other_bad_framing_is_refused_and_closed(daemon: Daemon, headers: bytes, status: int) -> None:
    request = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n{}" + SECOND
    with connect(daemon, request) as sock:
        raw = read_until_closed(sock)
    assert responses(raw) == [status]


# -- h2c ---------------------------------------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def test_h2c_with_prior_knowledge_is_refused_by_default(daemon: Daemon) -> None:
    with connect(daemon, PREFACE + EMPTY_SETTINGS) as sock:
        raw = read_until_closed(sock)
    assert responses(raw) == [505]


def test_an_h2c_upgrade_is_ignored_and_answered_in_http_1_1_by_default(daemon: Daemon) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    request += b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: close\r\n\r\n"
    with connect(daemon, request) as sock:
        raw = read_until_closed(sock)
    assert responses(raw) == [200]


def test_h2c_is_served_when_the_operator_allows_it(tmp_path: Path) -> None:
    allowed = start_daemon("neuron", tmp_path, "[limits]\nallow_h2c = true\n")
    try:
        with connect(allowed, PREFACE + EMPTY_SETTINGS) as sock:
            sock.settimeout(5)
            frame = sock.recv(9)
        assert len(frame) == 9 and frame[3] == 0x04  # the server's SETTINGS frame
    finally:
        allowed.kill()


def test_the_limits_section_reaches_both_daemons(tmp_path: Path) -> None:
    """A bad value is a config error naming the key, on both daemons."""
    for kind in KINDS:
        folder = tmp_path / kind
        folder.mkdir()
        with pytest.raises(AssertionError, match="max_connections"):
            start_daemon(kind, folder, "[limits]\nmax_connections = 0\n")


# -- running out of descriptors ------------------------------------------------------------------


def test_running_out_of_descriptors_is_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    """asyncio reports each failed accept() with a traceback; the daemon's handler keeps one line."""
    import asyncio
    import errno
    import logging

    from cortex_kernel.serving import ResourceErrorLog

    handler = ResourceErrorLog(interval_s=60)
    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.DEBUG):
            for _ in range(500):
                failure = OSError(errno.EMFILE, "Too many open files")
                handler(loop, {"message": "socket.accept() out of system resource", "exception": failure})
            handler(loop, {"message": "something else entirely"})
    finally:
        loop.close()
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert "out of system resource" in lines[0] and "Too many open files" in lines[0]
    assert not caplog.records[0].exc_info
    assert lines[1] == "something else entirely"


def test_the_cap_is_lowered_to_half_the_open_file_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    from cortex_kernel.config.schema import ConnectionLimits
    from cortex_kernel.serving import connection_cap

    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 4096))
    assert connection_cap(ConnectionLimits(max_connections=4096), "api") == 512
    assert connection_cap(ConnectionLimits(max_connections=100), "api") == 100
