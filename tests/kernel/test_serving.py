"""Serving: SIGTERM lets in-flight streams finish within the grace bound, then the process exits."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from tests.daemons import Daemon, LineStream, free_port, write_toml

from .conftest import write_distribution


def _neuron_with_slow_plugin(tmp_path: Path, grace: float) -> Daemon:
    site = write_distribution(tmp_path / "site")
    port = free_port()
    config = write_toml(
        tmp_path / "neuron.toml",
        f'listen = "127.0.0.1:{port}"\nshutdown_timeout_s = {grace}\ncache_dir = "{tmp_path / "cache"}"\n',
    )
    env = {"PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    daemon = Daemon(["neuron", "--config", str(config)], port, tmp_path / "neuron.log", env=env)
    daemon.start().wait_healthy()
    return daemon


def test_sigterm_drains_an_in_flight_stream(tmp_path: Path) -> None:
    daemon = _neuron_with_slow_plugin(tmp_path, grace=20)
    try:
        assert daemon.process is not None
        received = []
        with LineStream(f"{daemon.url}/slow?n=8&gap=0.15") as response:
            for line in response:
                received.append(line)
                if len(received) == 1:
                    daemon.process.send_signal(signal.SIGTERM)
        assert received == [f"chunk {i}" for i in range(8)]
        assert daemon.process.wait(20) == 0
    finally:
        daemon.kill()


def test_sigterm_cuts_a_stream_that_outlasts_the_grace_bound(tmp_path: Path) -> None:
    port = free_port()
    site = write_distribution(tmp_path / "site")
    config = write_toml(
        tmp_path / "cortex.toml",
        f'[gateway]\nlisten = "127.0.0.1:{port}"\nmetrics_listen = "127.0.0.1:{free_port()}"\n'
        "shutdown_grace_s = 0.5\n\n"
        f'[[neurons]]\nname = "n"\nendpoint = "http://127.0.0.1:9"\n',
    )
    env = {"PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    daemon = Daemon(["serve", "--config", str(config)], port, tmp_path / "gw.log", env=env)
    daemon.start().wait_healthy(path="/hello")
    try:
        assert daemon.process is not None
        with LineStream(f"{daemon.url}/slow?n=100&gap=0.1") as response:
            lines = iter(response)
            next(lines)
            daemon.process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            got = 1
            try:
                for _ in lines:
                    got += 1
            except OSError:
                pass
        assert got < 100  # cut short by the bound, not served to the end
        assert daemon.process.wait(15) == 0
        assert time.monotonic() - started < 10
    finally:
        daemon.kill()
