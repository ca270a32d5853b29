"""Connection floods against a real daemon, shared by tests/kernel/test_limits.py and bench/.

A flood runs in a thread while the caller's thread probes ``GET /health`` on fresh connections, so
the report says both what the attacker did and what a well-behaved client saw meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.daemons import Daemon, free_port, write_toml


def nofile_limit(limit: int) -> Callable[[], None]:
    """A ``preexec_fn`` that caps the child's open descriptors, as ``ulimit -n`` would."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


def start_daemon(kind: str, tmp: Path, extra_toml: str = "", nofile: int | None = None) -> Daemon:
    """A gateway (over one unreachable neuron, so nothing loads) or a bare neuron."""
    port = free_port()
    if kind == "gateway":
        text = (
            f'[gateway]\nlisten = "127.0.0.1:{port}"\nmetrics_listen = "127.0.0.1:{free_port()}"\n\n'
            f'[[neurons]]\nname = "n"\nendpoint = "http://127.0.0.1:9"\n\n{extra_toml}'
        )
        args = ["serve", "--config", str(write_toml(tmp / "cortex.toml", text))]
    else:
        text = f'listen = "127.0.0.1:{port}"\ncache_dir = "{tmp / "cache"}"\n\n{extra_toml}'
        args = ["neuron", "--config", str(write_toml(tmp / "neuron.toml", text))]
    daemon = Daemon(args, port, tmp / f"{kind}.log")
    if nofile is None:
        daemon.start()
    else:
        _start_limited(daemon, nofile)
    daemon.wait_healthy()
    return daemon


def _start_limited(daemon: Daemon, nofile: int) -> None:
    import subprocess

    from tests.daemons import EXE

    with daemon.log.open("ab") as handle:
        daemon.process = subprocess.Popen(
            [EXE, *daemon.args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=daemon.env,
            start_new_session=True,
            preexec_fn=nofile_limit(nofile),
        )


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class FloodReport:
    attempted: int = 0
    connected: int = 0
    probes: list[float] = field(default_factory=list)  # seconds; inf for a probe that failed
    log_bytes: int = 0
    log_lines: int = 0
    peak_descriptors: int = 0

    def failed_probes(self, bound_s: float = 1.0) -> int:
        return sum(1 for p in self.probes if p > bound_s)

    def summary(self) -> str:
        finite = [p for p in self.probes if p != float("inf")] or [float("nan")]
        return (
            f"connections attempted {self.attempted}, connected {self.connected}; "
            f"probes {len(self.probes)}, over 1 s or failed {self.failed_probes()}, "
            f"p50 {statistics.median(finite) * 1000:.1f} ms, max {max(self.probes) * 1000:.1f} ms; "
            f"peak descriptors {self.peak_descriptors}; "
            f"log grew {self.log_bytes} bytes, {self.log_lines} lines"
        )


def probe(url: str, timeout: float = 1.0) -> float:
    """Seconds one ``GET`` took on a fresh connection, or inf when it failed or timed out."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
    except OSError:
        return float("inf")
    return time.monotonic() - started


def connect_and_close_flood(
    daemon: Daemon, rate: float, seconds: float, probe_every: float = 0.25
) -> FloodReport:
    """Open and at once close ``rate`` connections a second for ``seconds``, probing meanwhile."""
    assert daemon.process is not None
    report = FloodReport()
    log_before = daemon.log.stat().st_size
    lines_before = daemon.log_text().count("\n")
    stop = threading.Event()

    def flood() -> None:
        started = time.monotonic()
        while not stop.is_set():
            due = started + report.attempted / rate
            if (delay := due - time.monotonic()) > 0:
                time.sleep(delay)
            report.attempted += 1
            with contextlib.suppress(OSError), socket.socket() as sock:
                sock.settimeout(1.0)
                sock.connect(("127.0.0.1", daemon.port))
                report.connected += 1

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            report.probes.append(probe(f"{daemon.url}/health"))
            with contextlib.suppress(OSError):
                report.peak_descriptors = max(report.peak_descriptors, open_descriptors(daemon.process.pid))
            time.sleep(probe_every)
    finally:
        stop.set()
        thread.join(5)
    report.log_bytes = daemon.log.stat().st_size - log_before
    report.log_lines = daemon.log_text().count("\n") - lines_before
    return report
