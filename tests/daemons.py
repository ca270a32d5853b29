"""Real daemons on loopback for tests: start ``cortex-kernel`` processes and wait until they answer."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

EXE = str(Path(sys.executable).with_name("cortex-kernel"))


def free_port(avoid: Collection[int] = ()) -> int:
    """A port free now and not in ``avoid``: two ``bind(0)`` in a row may be given the same free
    port, and a gateway told to listen on one port twice (its API and metrics) cannot start."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in avoid:
            return port


def http_json(
    method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 30.0
) -> tuple[int, Any, dict[str, str]]:
    """(status, decoded body, headers) of one request; never raises on HTTP errors."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if raw else None), dict(response.headers)
    except urllib.error.HTTPError as exc:
        with exc:  # an HTTPError holds the response (and its socket) open until closed
            raw = exc.read()
        try:
            decoded = json.loads(raw)
        except ValueError:
            decoded = raw.decode(errors="replace")
        return exc.code, decoded, dict(exc.headers)


class Daemon:
    """One ``cortex-kernel`` process, its port and its log."""

    def __init__(self, args: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.port = port
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Daemon:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [EXE, *self.args], stdout=handle, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        handle.close()
        return self

    def wait_healthy(self, timeout: float = 60.0, path: str = "/health") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited with {self.process.returncode}:\n{self.log_text()}")
            with contextlib.suppress(OSError):
                status, body, _ = http_json("GET", self.url + path, timeout=2)
                if status == 200:
                    answer: dict[str, Any] = body
                    return answer
            time.sleep(0.05)
        raise AssertionError(f"daemon not healthy after {timeout}s:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait, then SIGKILL; return the exit status."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(10)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


class Started:
    """The daemons a fixture starts, all stopped when it ends, whatever the test did."""

    def __init__(self) -> None:
        self.daemons: list[Daemon] = []

    def healthy(self, daemon: Daemon) -> Daemon:
        """Start ``daemon`` and wait until it answers its health check."""
        self.daemons.append(daemon.start())
        daemon.wait_healthy()
        return daemon

    def __enter__(self) -> Started:
        return self

    def __exit__(self, *exc: object) -> None:
        stop_all(self.daemons)


def wait_ready(daemon: Daemon, timeout: float = 60.0) -> None:
    """Until the daemon's readiness probe answers 200: a neuron once its default models are
    loaded, a gateway once it has polled a node."""
    deadline = time.monotonic() + timeout
    while http_json("GET", f"{daemon.url}/health/ready", timeout=5)[0] != 200:
        assert time.monotonic() < deadline, f"not ready after {timeout} s:\n{daemon.log_text()}"
        time.sleep(0.1)


def wait_nodes_up(gateway: Daemon, count: int, timeout: float = 60.0) -> dict[str, Any]:
    """Until the gateway's health says ``count`` nodes are up (it learns so by polling them); its
    last health body."""
    deadline = time.monotonic() + timeout
    while (health := gateway.wait_healthy())["nodes"]["up"] != count:
        assert time.monotonic() < deadline, f"{health['nodes']}\n{gateway.log_text()}"
        time.sleep(0.05)
    return health


def admin_fleet(gateway: Daemon) -> dict[str, Any]:
    """The gateway's ``GET /admin/fleet``: every node and the models it holds, as it sees them."""
    fleet: dict[str, Any] = http_json("GET", f"{gateway.url}/admin/fleet")[1]
    return fleet


def gateway_toml(port: int, neurons: dict[str, str], extra: str = "") -> str:
    """A ``cortex.toml`` listening on ``port`` over ``neurons`` (name: URL); ``extra`` goes in the
    ``[gateway]`` table (and may open tables of its own). The metrics port is a free one unless
    ``extra`` names it: never the fixed default, so tests running side by side never collide."""
    if "metrics_listen" not in extra:
        extra = f'metrics_listen = "127.0.0.1:{free_port(avoid={port})}"\n{extra}'
    entries = "".join(
        f"\n[[neurons]]\nname = {toml_str(name)}\nendpoint = {toml_str(url)}\n"
        for name, url in neurons.items()
    )
    return f'[gateway]\nlisten = "127.0.0.1:{port}"\n{extra}\n{entries}'


def stop_all(daemons: list[Daemon], timeout: float = 30.0) -> None:
    """Stop ``daemons`` as ``Daemon.stop`` does, all at once: SIGTERM to every one first, then wait
    for each (SIGKILL past ``timeout``), so a fixture's teardown takes the slowest daemon's
    shutdown (a neuron unloading its models) rather than the sum of them."""
    for daemon in daemons:
        if daemon.alive():
            assert daemon.process is not None
            daemon.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for daemon in daemons:
        if daemon.process is None:
            continue
        try:
            daemon.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            daemon.kill()


def write_toml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def toml_str(value: str | Path) -> str:
    return json.dumps(str(value))


def model_toml(model: str, source: str | Path, extra: str = "", **fields: object) -> str:
    """One ``[[models]]`` entry for the transformers harness (placed on any node, even one without
    a GPU): ``fields`` as TOML values (a string quoted, a number or a boolean as it is), then the
    raw TOML lines ``extra``."""
    values = "".join(f"{key} = {json.dumps(value)}\n" for key, value in fields.items())
    return (
        f'\n[[models]]\nid = {toml_str(model)}\nharness = "transformers"\nsource = {toml_str(source)}\n'
        f"min_devices = 0\n{values}{extra}\n"
    )


class LineStream:
    """A streamed HTTP response read line by line over a socket this object owns.

    HTTP/1.0, so the body arrives unframed until the server closes it; the test keeps the
    socket (and so the request) open exactly as long as it holds this object, and closing it
    is what a client that walks away does.
    """

    def __init__(self, url: str, method: str = "GET", body: Any = None, timeout: float = 30.0) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        data = json.dumps(body).encode() if body is not None else b""
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        head = f"{method} {path} HTTP/1.0\r\nHost: {parts.hostname}\r\nContent-Length: {len(data)}\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        self.sock.sendall(head.encode() + b"\r\n" + data)
        self.file = self.sock.makefile("rb")
        status_line = self.file.readline().decode()
        self.status = int(status_line.split()[1])
        self.headers: dict[str, str] = {}
        while (line := self.file.readline().decode().rstrip("\r\n")) != "":
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def getheader(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def __iter__(self) -> Iterator[str]:
        while True:
            line = self.file.readline()
            if not line:
                return
            text = line.decode().rstrip("\r\n")
            if text:
                yield text

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.file.close()
        self.sock.close()

    def __enter__(self) -> LineStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def unloadable_model(root: Path) -> Path:
    """A model directory under ``root`` that exists (so its source is accepted) but cannot load:
    its config names no architecture, so the harness fails the load and keeps a failed record."""
    broken = root / "unloadable-model"
    broken.mkdir(parents=True, exist_ok=True)
    (broken / "config.json").write_text("{}")
    return broken


def endless_stream(model: str) -> dict[str, Any]:
    """A streamed chat request that runs until something ends it (40,000 tokens, EOS ignored):
    what the fault tests hold open while they freeze, evict, unload or drain."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": "go"}],
        "max_tokens": 40000,
        "ignore_eos": True,
        "stream": True,
    }
