"""``[gateway] workers = N``: N real gateway processes on one port under one supervisor.

The gateways here route to a neuron endpoint nothing listens on: ``/health`` still answers (the
fleet is "impaired"), which is all these tests need to see which worker took a connection.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemons import EXE, Daemon, free_port, gateway_toml, http_json, write_toml

pytestmark = pytest.mark.slow

STARTED = re.compile(r"gateway worker (\d+) started \(pid (\d+)\)")


def _config(tmp_path: Path, port: int, workers: str, neurons: bool = True) -> Path:
    fleet = {"n1": f"http://127.0.0.1:{free_port()}"} if neurons else {}
    # Port 0 for metrics: each worker takes its own free port (port + i could meet a busy one).
    extra = f'metrics_listen = "127.0.0.1:0"\nworkers = {workers}\n'
    return write_toml(tmp_path / "cortex.toml", gateway_toml(port, fleet, extra))


def _line_of(config: Path, text: str) -> int:
    return config.read_text().splitlines().index(text) + 1


def _worker_pids(daemon: Daemon) -> dict[int, int]:
    """The latest pid of each worker, from the supervisor's one line per worker start."""
    return {int(index): int(pid) for index, pid in STARTED.findall(daemon.log_text())}


def _workers_seen(daemon: Daemon, want: set[int], timeout: float = 60.0) -> set[int]:
    """Open new connections until every worker in ``want`` has answered one (the kernel spreads
    connections over the workers' sockets by a hash, so a handful of tries sees both)."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while not want <= seen and time.monotonic() < deadline:
        status, body, _ = http_json("GET", f"{daemon.url}/health", timeout=10)
        if status == 200:
            seen.add(body["worker"])
    return seen


def _gone(pid: int) -> bool:
    """No such process, or only its exit status left for a parent to collect."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[Daemon]:
    port = free_port()
    daemon = Daemon(["serve", "--config", str(_config(tmp_path, port, "2"))], port, tmp_path / "gw.log")
    daemon.start()
    daemon.wait_healthy()
    yield daemon
    daemon.kill()


def test_two_workers_answer_on_one_port_and_sigterm_drains_both(two_workers: Daemon) -> None:
    assert _workers_seen(two_workers, {0, 1}) == {0, 1}
    pids = _worker_pids(two_workers)
    assert sorted(pids) == [0, 1] and len(set(pids.values())) == 2
    assert two_workers.stop(timeout=60) == 0
    assert all(_gone(pid) for pid in pids.values()), two_workers.log_text()
    assert "gateway worker 0 exited with status 0" in two_workers.log_text()
    assert "gateway worker 1 exited with status 0" in two_workers.log_text()


def test_a_killed_worker_is_restarted_on_the_same_port(two_workers: Daemon) -> None:
    old = _worker_pids(two_workers)[1]
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while _worker_pids(two_workers).get(1, old) == old:
        assert time.monotonic() < deadline, two_workers.log_text()
        time.sleep(0.1)
    assert f"gateway worker 1 (pid {old}) exited with status 137; restarting" in two_workers.log_text()
    assert _workers_seen(two_workers, {0, 1}) == {0, 1}  # the new worker 1 answers on the port
    assert two_workers.stop(timeout=60) == 0


def test_workers_stop_when_the_supervisor_is_killed_outright(two_workers: Daemon) -> None:
    pids = _worker_pids(two_workers)
    assert two_workers.process is not None
    os.kill(two_workers.process.pid, signal.SIGKILL)
    two_workers.process.wait(30)
    deadline = time.monotonic() + 60
    try:
        while not all(_gone(pid) for pid in pids.values()):
            assert time.monotonic() < deadline, f"workers {pids} outlived their supervisor"
            time.sleep(0.1)
    finally:  # the fixture's clean-up goes through the supervisor, which is gone
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _serve_once(tmp_path: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, "serve", "--config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )


def test_a_negative_worker_count_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    config = _config(tmp_path, free_port(), "-1")
    result = _serve_once(tmp_path, config)
    assert result.returncode == 2, result.stderr
    assert f"{config}:{_line_of(config, 'workers = -1')}: gateway.workers:" in result.stderr


def test_several_workers_without_neurons_is_a_config_error(tmp_path: Path) -> None:
    config = _config(tmp_path, free_port(), "2", neurons=False)
    result = _serve_once(tmp_path, config)
    assert result.returncode == 2, result.stderr
    number = _line_of(config, "workers = 2")
    assert f"{config}:{number}: gateway.workers: 2 workers need [[neurons]]" in result.stderr


def test_a_taken_port_is_one_error_before_any_worker_starts(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve_once(tmp_path, _config(tmp_path, port, "2"))
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "worker 0 started" not in result.stderr


def test_a_config_error_while_a_worker_builds_its_gateway_ends_the_supervisor_at_once(tmp_path: Path) -> None:
    """An unknown router is found only when a worker builds its app; no restart can mend it, so the
    supervisor stops at once with the one-line error and status 2, as a single gateway does."""
    config = _config(tmp_path, free_port(), "2")
    with config.open("a") as out:
        out.write('\n[routing]\nstrategy = "no_such_router"\n')
    result = _serve_once(tmp_path, config)
    assert result.returncode == 2, result.stderr
    number = _line_of(config, 'strategy = "no_such_router"')
    line = f"error: {config}:{number}: routing.strategy: unknown routing strategy 'no_such_router'"
    assert result.stderr.count(line) == 1, result.stderr
    assert "restarting it in" not in result.stderr
    assert "Traceback" not in result.stderr
