"""Gateways over two real neurons serving the same tiny model, with router plugins installed.

Routers are found by entry point like every plugin. A test package (a module and its
``.dist-info``) on the daemons' ``PYTHONPATH`` registers a third-party router.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemons import Daemon, free_port, http_json, toml_str, write_toml
from tests.fleet_fixtures import models_toml

RECORDER = """
import msgspec
from cortex_kernel import hookimpl


class Recorder:
    name = "recorder"

    def route(self, facts):
        with open(PATH, "ab") as f:
            f.write(msgspec.json.encode(facts) + b"\\n")
        last = max(r.name for r in facts.replicas)
        # A replica that does not exist, and the same one twice: the kernel drops both.
        return ["no-such-node", last, last]


@hookimpl
def register_routers():
    return [Recorder()]
"""


def _dist(site: Path, name: str, entry: str) -> None:
    info = site / f"{name}-1.0.dist-info"
    write_toml(info / "METADATA", f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 1.0\n")
    write_toml(info / "entry_points.txt", f"[cortex_kernel]\n{entry}\n")


@pytest.fixture
def router_site(tmp_path: Path) -> tuple[Path, Path]:
    """A site directory with the test router package; returns it and the facts log it writes."""
    site = tmp_path / "site"
    facts = tmp_path / "facts.jsonl"
    write_toml(site / "cortex_testrouter.py", RECORDER.replace("PATH", repr(str(facts))))
    _dist(site, "cortex_testrouter", "recorder = cortex_testrouter")
    return site, facts


@pytest.fixture
def two_neurons(start_neuron: Callable[..., Daemon]) -> dict[str, Daemon]:
    """Two neurons, each with tiny-chat loaded at start."""
    return {name: start_neuron(default_models='["tiny-chat"]') for name in ("n1", "n2")}


@pytest.fixture
def routed_gateway(
    tmp_path: Path, tiny_chat_model: Path, tiny_embed_model: Path, router_site: tuple[Path, Path]
) -> Iterator[Callable[..., Daemon]]:
    """Start a gateway over ``neurons`` with ``[routing]`` settings, once both hold tiny-chat ready."""
    started: list[Daemon] = []

    def start(neurons: dict[str, Daemon], routing: str, gateway_extra: str = "") -> Daemon:
        port = free_port()
        etc = tmp_path / f"gateway-{port}"
        write_toml(etc / "models.toml", models_toml(tiny_chat_model, tiny_embed_model))
        entries = "".join(
            f"\n[[neurons]]\nname = {toml_str(name)}\nendpoint = {toml_str(n.url)}\n"
            for name, n in neurons.items()
        )
        config = write_toml(
            etc / "cortex.toml",
            f'[gateway]\nlisten = "127.0.0.1:{port}"\nmetrics_listen = "127.0.0.1:{free_port()}"\n'
            f"poll_interval_s = 0.5\n{gateway_extra}\n[routing]\n{routing}\n{entries}",
        )
        env = {"PYTHONPATH": os.pathsep.join([str(router_site[0]), *sys.path])}
        daemon = Daemon(["serve", "--config", str(config)], port, etc / "gateway.log", env=env).start()
        started.append(daemon)
        daemon.wait_healthy()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            nodes = http_json("GET", f"{daemon.url}/admin/fleet")[1]["nodes"]
            ready = [
                n for n in nodes if any(m["id"] == "tiny-chat" and m["state"] == "ready" for m in n["models"])
            ]
            if len(ready) == len(neurons):
                return daemon
            time.sleep(0.2)
        raise AssertionError(f"tiny-chat not ready on every neuron: {nodes}")

    yield start
    for daemon in started:
        daemon.stop()


SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} ([0-9.e+-]+)$")


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A Prometheus text page as {(name, labels): value}."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as reply:
        text = reply.read().decode()
    samples = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            name, labels, value = match.groups()
            pairs = frozenset(tuple(p.split("=", 1)) for p in re.findall(r'\w+="[^"]*"', labels))
            samples[name, frozenset((k, v.strip('"')) for k, v in pairs)] = float(value)
    return samples


def neuron_counts(neuron: Daemon) -> tuple[float, float, float]:
    """(chat requests answered 2xx, prompt tokens, completion tokens) for tiny-chat, from the
    neuron's own /metrics: what the neuron says it served, not what the gateway says it sent."""
    samples = scrape(f"{neuron.url}/metrics")

    def get(name: str, **labels: str) -> float:
        return samples.get((name, frozenset(labels.items())), 0.0)

    return (
        get("cortex_neuron_requests_total", model="tiny-chat", endpoint="chat", status="2xx"),
        get("cortex_neuron_tokens_total", model="tiny-chat", kind="prompt"),
        get("cortex_neuron_tokens_total", model="tiny-chat", kind="completion"),
    )
