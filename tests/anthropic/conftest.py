"""Fixtures for the Anthropic dialect: the gateway app in-process in front of a scripted neuron,
driven by the official ``anthropic`` SDK, and a real gateway + neuron pair with the tiny model."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from cortex_anthropic.dialect import AnthropicDialect
from cortex_kernel.config.schema import AuthSection
from tests.anthropic.scripted import MODEL, ScriptedNeuron
from tests.daemons import Daemon, free_port, toml_str, write_toml
from tests.dialect_gateway import dialect_gateway_app

FAST_PINGS_S = 0.05


def gateway_app(
    neuron_url: str,
    *,
    catalogue: tuple[str, ...] = (MODEL,),
    aliases: dict[str, str] | None = None,
    embedding: tuple[str, ...] = (),
    dialect: AnthropicDialect | None = None,
    auth: AuthSection | None = None,
) -> Starlette:
    """The real gateway app (gateway plugin + this dialect) pointed at one neuron."""
    return dialect_gateway_app(
        neuron_url,
        dialect or AnthropicDialect(ping_every_s=FAST_PINGS_S),
        catalogue=catalogue,
        embedding=embedding,
        aliases=aliases,
        auth=auth,
    )


@dataclass
class Gateway:
    """The gateway under test: raw HTTP (``http``), the SDK (``client``) and the fake neuron."""

    http: TestClient
    client: anthropic.Anthropic
    neuron: ScriptedNeuron


@pytest.fixture
def neuron() -> Iterator[ScriptedNeuron]:
    scripted = ScriptedNeuron().start()
    yield scripted
    scripted.stop()


@pytest.fixture
def make_gateway(neuron: ScriptedNeuron) -> Iterator[Callable[..., Gateway]]:
    """Build gateways in front of ``neuron``; keyword arguments go to :func:`gateway_app`."""
    with contextlib.ExitStack() as stack:

        def make(**kwargs) -> Gateway:
            http = stack.enter_context(TestClient(gateway_app(neuron.url, **kwargs)))
            client = anthropic.Anthropic(
                base_url=str(http.base_url), api_key="client-key", http_client=http, max_retries=0
            )
            return Gateway(http=http, client=client, neuron=neuron)

        yield make


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway()


# ---------------------------------------------------------------------------------------------
# A real gateway in front of a real neuron serving the tiny synthetic chat model.

TINY_CONTEXT = 64


@pytest.fixture(scope="module")
def real_fleet(tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path) -> Iterator[str]:
    """``cortex-kernel neuron`` + ``cortex-kernel serve`` on loopback; yields the gateway URL.

    The catalogue has ``tiny-chat`` (its full context) and ``tiny-short`` (the same weights with
    a 64-token context, to exercise clamping and "prompt is too long"). One pair serves a whole
    module: starting a neuron and loading a model costs seconds, and the tests only read."""
    tmp_path = tmp_path_factory.mktemp("anthropic-fleet")
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

[aliases]
claude-haiku = "tiny-chat"
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
        f'[[neurons]]\nname = "n1"\nendpoint = "http://127.0.0.1:{neuron_port}"\n',
    )
    neuron = Daemon(
        ["neuron", "--config", str(neuron_config)], neuron_port, home / "neuron.log", {"HF_HUB_OFFLINE": "1"}
    )
    gateway = Daemon(["serve", "--config", str(gateway_config)], gateway_port, etc / "gateway.log")
    try:
        neuron.start()
        gateway.start()  # in parallel: both pay for their imports at start-up
        neuron.wait_healthy()
        deadline = time.monotonic() + 60
        while gateway.wait_healthy()["nodes"]["up"] < 1:  # the gateway polls every 2 s
            assert time.monotonic() < deadline, gateway.log_text()
            time.sleep(0.1)
        yield gateway.url
    finally:
        gateway.stop()
        neuron.stop()
