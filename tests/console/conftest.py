"""A real fleet for the console: a gateway over two real neurons serving the tiny chat model.

``n1`` has room for one of the 60 MB models ``a`` and ``b``, so loading the second evicts the
first; ``p`` is pinned to ``n2`` so the playground's chats never disturb ``n1``. The fleet is
shared by a module's tests (each starts three processes); tests that change it use only ``n1``
and models no other test loads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cortex_kernel.keys import key_digest
from tests.daemons import Daemon, free_port, http_json, toml_str, write_toml
from tests.fleet_fixtures import models_toml

ADMIN_KEY = "console-admin-key"
CLIENT_KEY = "console-client-key"


def extra_models(chat: Path) -> str:
    sized = "".join(
        f'\n[[models]]\nid = "{name}"\nharness = "transformers"\nsource = {toml_str(chat)}\n'
        "min_devices = 0\nvram_mb = 60\n"
        for name in ("a", "b")
    )
    pinned = (
        f'\n[[models]]\nid = "p"\nharness = "transformers"\nsource = {toml_str(chat)}\n'
        'min_devices = 0\nvram_mb = 16\npinned_on = ["n2"]\n'
    )
    broken = (  # a source outside every model root: the node refuses to load it
        '\n[[models]]\nid = "broken"\nharness = "transformers"\n'
        'source = "/nowhere/weights"\nmin_devices = 0\n'
    )
    return sized + pinned + broken


@dataclass
class ConsoleFleet:
    gateway: Daemon
    neurons: dict[str, Daemon]

    @property
    def url(self) -> str:
        return self.gateway.url

    def fleet(self) -> dict[str, Any]:
        status, body, _ = http_json("GET", f"{self.url}/admin/fleet", token=ADMIN_KEY)
        assert status == 200, body
        fleet: dict[str, Any] = body
        return fleet

    def wait(self, check: Callable[[dict[str, Any]], bool], timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = self.fleet()
            if check(state):
                return state
            assert time.monotonic() < deadline, f"the fleet never reached the expected state: {state}"
            time.sleep(0.1)


def start_console_fleet(
    base: Path, chat: Path, embed: Path, console: str = "", admin_keys: bool = True
) -> tuple[ConsoleFleet, list[Daemon]]:
    started: list[Daemon] = []
    roots = sorted({str(chat.parent), str(embed.parent)})
    catalogue = models_toml(chat, embed) + extra_models(chat)
    neurons: dict[str, Daemon] = {}
    for name, budget in (("n1", 70), ("n2", 400)):
        port = free_port()
        home = base / f"{name}-{port}"
        write_toml(home / "models.toml", catalogue)
        config = write_toml(
            home / "neuron.toml",
            f'listen = "127.0.0.1:{port}"\nname = "{name}"\ncache_dir = {toml_str(home / "cache")}\n'
            f"model_roots = {roots!r}\ndefault_models = []\nmemory_budget_mb = {budget}\n".replace("'", '"'),
        )
        daemon = Daemon(
            ["neuron", "--config", str(config)], port, home / "neuron.log", env={"HF_HUB_OFFLINE": "1"}
        )
        started.append(daemon.start())
        neurons[name] = daemon
    for daemon in neurons.values():
        daemon.wait_healthy()
    port = free_port()
    etc = base / f"gateway-{port}"
    write_toml(etc / "models.toml", catalogue)
    entries = "".join(
        f'\n[[neurons]]\nname = "{name}"\nendpoint = {toml_str(n.url)}\n' for name, n in neurons.items()
    )
    auth = (
        f'[auth]\napi_keys = ["{key_digest(CLIENT_KEY)}"]\nadmin_keys = ["{key_digest(ADMIN_KEY)}"]\n'
        if admin_keys
        else ""
    )
    config = write_toml(
        etc / "cortex.toml",
        f'[gateway]\nlisten = "127.0.0.1:{port}"\nmetrics_listen = "127.0.0.1:{free_port()}"\n'
        f'poll_interval_s = 0.5\n\n[eviction]\nstrategy = "lru"\n\n{auth}\n{console}\n{entries}',
    )
    gateway = Daemon(["serve", "--config", str(config)], port, etc / "gateway.log").start()
    started.append(gateway)
    gateway.wait_healthy()
    fleet = ConsoleFleet(gateway, neurons)
    fleet.wait(lambda s: all(n["up"] for n in s["nodes"]))
    return fleet, started


@pytest.fixture(scope="module")
def console_fleet(
    tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path, tiny_embed_model: Path
) -> Iterator[ConsoleFleet]:
    fleet, started = start_console_fleet(
        tmp_path_factory.mktemp("console"), tiny_chat_model, tiny_embed_model
    )
    yield fleet
    for daemon in started:
        daemon.stop()
