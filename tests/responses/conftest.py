"""Fixtures for the Responses dialect: the gateway app in-process in front of the scripted neuron
double (:mod:`tests.anthropic.scripted`), driven by the official ``openai`` SDK, and a real
``cortex-kernel serve`` + ``cortex-kernel neuron`` pair with the tiny model."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from cortex_responses.dialect import ResponsesDialect
from tests.anthropic.scripted import MODEL, ScriptedNeuron
from tests.daemons import Daemon, free_port, toml_str, write_toml
from tests.dialect_gateway import dialect_gateway_app

FAST_KEEPALIVE_S = 0.05


def gateway_app(
    neuron_url: str, *, catalogue: tuple[str, ...] = (MODEL,), dialect: ResponsesDialect | None = None
) -> Starlette:
    """The real gateway app (gateway plugin + this dialect) pointed at one neuron."""
    return dialect_gateway_app(
        neuron_url,
        dialect or ResponsesDialect(keepalive_s=FAST_KEEPALIVE_S),
        catalogue=catalogue,
        embedding=("embedder",),
    )


@dataclass
class Gateway:
    """The gateway under test: raw HTTP (``http``), the SDK (``client``) and the fake neuron."""

    http: TestClient
    client: openai.OpenAI
    neuron: ScriptedNeuron


@pytest.fixture
def neuron() -> Iterator[ScriptedNeuron]:
    scripted = ScriptedNeuron().start()
    yield scripted
    scripted.stop()


@pytest.fixture
def make_gateway(neuron: ScriptedNeuron) -> Iterator[Callable[..., Gateway]]:
    with contextlib.ExitStack() as stack:

        def make(**kwargs) -> Gateway:
            http = stack.enter_context(TestClient(gateway_app(neuron.url, **kwargs)))
            client = openai.OpenAI(
                base_url=f"{http.base_url}/v1", api_key="client-key", http_client=http, max_retries=0
            )
            return Gateway(http=http, client=client, neuron=neuron)

        yield make


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway()


# ---------------------------------------------------------------------------------------------
# A real gateway in front of a real neuron serving the tiny synthetic chat model.

TINY_CONTEXT = 64


@dataclass
class RealFleet:
    url: str
    log_text: Callable[[], str]


@pytest.fixture(scope="module")
def real_fleet(tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path) -> Iterator[RealFleet]:
    """``cortex-kernel neuron`` + ``cortex-kernel serve`` on loopback; yields the gateway URL.

    ``tiny-chat`` has its full context, ``tiny-short`` the same weights with a 64-token context
    (for clamping and "input too long")."""
    tmp_path = tmp_path_factory.mktemp("responses-fleet")
    catalogue = f"""
[[models]]
id = "tiny-chat"
harness = "transformers"
source = {toml_str(tiny_chat_model)}
min_devices = 0

[[models]]
id = "tiny-short"
harness = "transformers"
source = {toml_str(tiny_chat_model)}
min_devices = 0
context_length = {TINY_CONTEXT}
"""
    neuron_port, gateway_port = free_port(), free_port()
    home = tmp_path / "neuron"
    write_toml(home / "models.toml", catalogue)
    neuron_config = write_toml(
        home / "neuron.toml",
        f'listen = "127.0.0.1:{neuron_port}"\nname = "n1"\n'
        f"cache_dir = {toml_str(home / 'cache')}\n"
        f"model_roots = [{toml_str(tiny_chat_model.parent)}]\n",
    )
    etc = tmp_path / "gateway"
    write_toml(etc / "models.toml", catalogue)
    gateway_config = write_toml(
        etc / "cortex.toml",
        f'[gateway]\nlisten = "127.0.0.1:{gateway_port}"\nmetrics_listen = "127.0.0.1:{free_port()}"\n\n'
        f'[[neurons]]\nname = "n1"\nendpoint = "http://127.0.0.1:{neuron_port}"\n\n'
        "[responses]\nstore_max_responses = 64\nstore_ttl_s = 600\n",
    )
    neuron = Daemon(
        ["neuron", "--config", str(neuron_config)], neuron_port, home / "neuron.log", {"HF_HUB_OFFLINE": "1"}
    )
    gateway = Daemon(["serve", "--config", str(gateway_config)], gateway_port, etc / "gateway.log")
    try:
        neuron.start()
        gateway.start()
        neuron.wait_healthy()
        deadline = time.monotonic() + 60
        while gateway.wait_healthy()["nodes"]["up"] < 1:
            assert time.monotonic() < deadline, gateway.log_text()
            time.sleep(0.1)
        yield RealFleet(url=gateway.url, log_text=gateway.log_text)
    finally:
        gateway.stop()
        neuron.stop()
