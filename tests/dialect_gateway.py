"""The real gateway app, in-process, with one configured dialect in front of one neuron.

The dialect tests (Anthropic, Responses) drive it with the official SDKs against the scripted
neuron double; the dialect object is passed in so a test can choose its settings. Their real
fleet (a ``serve`` + ``neuron`` pair with the tiny model) is built here too, so both dialects
are tested against the same daemons.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp

import cortex_evictors.plugin
import cortex_gateway.plugin
from cortex_kernel.app import create_app
from cortex_kernel.config.loader import LoadedConfig
from cortex_kernel.config.schema import AuthSection, Catalogue, CortexConfig, ModelProfile, NeuronEndpoint
from cortex_kernel.dialect import Dialect
from cortex_kernel.hookspecs import hookimpl
from cortex_kernel.kernel import Kernel
from cortex_kernel.plugins import build_plugin_manager
from cortex_kernel.testing.scripted_neuron import ScriptedNeuron
from tests.daemons import Daemon, free_port, gateway_toml, model_toml, toml_str, wait_nodes_up, write_toml

Client = TypeVar("Client")


class DialectPlugin:
    """Registers one configured dialect object."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    @hookimpl
    def register_dialects(self) -> list[Dialect]:
        return [self.dialect]


def dialect_gateway_app(
    neuron_url: str,
    dialect: Dialect,
    *,
    catalogue: tuple[str, ...],
    embedding: tuple[str, ...] = (),
    aliases: dict[str, str] | None = None,
    auth: AuthSection | None = None,
) -> ASGIApp:
    """The gateway plugin, the evictors and ``dialect``, pointed at the neuron at ``neuron_url``."""
    profiles = [ModelProfile(id=model, harness="scripted", min_devices=0) for model in catalogue]
    profiles += [ModelProfile(id=m, harness="scripted", min_devices=0, task="embedding") for m in embedding]
    neurons = [NeuronEndpoint(name="n1", endpoint=neuron_url)]
    config = CortexConfig(neurons=neurons, auth=auth or AuthSection())
    loaded = LoadedConfig(
        kind="cortex",
        value=config,
        path=None,
        sources={},
        catalogue=Catalogue(models=profiles, aliases=dict(aliases or {})),
    )
    pm = build_plugin_manager(
        load_entrypoints=False,
        extra=[
            ("gateway", cortex_gateway.plugin),
            ("evictors", cortex_evictors.plugin),
            (dialect.name, DialectPlugin(dialect)),
        ],
    )
    return create_app(Kernel(role="gateway", config=loaded, pm=pm))


@dataclass
class Gateway(Generic[Client]):
    """The gateway under test: raw HTTP (``http``), the dialect's SDK (``client``) and the fake neuron."""

    http: TestClient
    client: Client
    neuron: ScriptedNeuron


@pytest.fixture
def neuron(scripted_neuron: ScriptedNeuron) -> ScriptedNeuron:
    """The scripted neuron the dialect's gateways stand in front of."""
    return scripted_neuron


@pytest.fixture
def make_gateway(
    neuron: ScriptedNeuron, dialect_app: Callable[..., ASGIApp], dialect_sdk: Callable[[TestClient], Any]
) -> Iterator[Callable[..., Gateway[Any]]]:
    """Build gateways in front of ``neuron`` (keyword arguments go to the dialect's ``dialect_app``),
    each driven by the SDK client ``dialect_sdk`` makes over its in-process transport.

    A dialect's conftest imports these fixtures and defines ``dialect_app`` and ``dialect_sdk``."""
    with contextlib.ExitStack() as stack:

        def make(**kwargs: Any) -> Gateway[Any]:
            http = stack.enter_context(TestClient(dialect_app(neuron.url, **kwargs)))
            return Gateway(http=http, client=dialect_sdk(http), neuron=neuron)

        yield make


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway[Any]]) -> Gateway[Any]:
    return make_gateway()


@contextlib.contextmanager
def real_fleet(
    tmp_path: Path,
    chat_model: Path,
    *,
    short_context: int,
    catalogue_extra: str = "",
    gateway_extra: str = "",
) -> Iterator[Daemon]:
    """``cortex-kernel neuron`` + ``cortex-kernel serve`` on loopback; yields the gateway once it
    sees the neuron up.

    ``tiny-chat`` has its full context, ``tiny-short`` the same weights with ``short_context``
    tokens (for clamping and "too long" errors). A dialect's suite shares one pair per module:
    starting a neuron and loading a model costs seconds, and the tests only read."""
    catalogue = (
        model_toml("tiny-chat", chat_model)
        + model_toml("tiny-short", chat_model, context_length=short_context)
        + catalogue_extra
    )
    neuron_port, gateway_port = free_port(), free_port()
    home = tmp_path / "neuron"
    write_toml(home / "models.toml", catalogue)
    neuron_config = write_toml(
        home / "neuron.toml",
        f'listen = "127.0.0.1:{neuron_port}"\nname = "n1"\n'
        f"cache_dir = {toml_str(home / 'cache')}\n"
        f"model_roots = [{toml_str(chat_model.parent)}]\n",
    )
    etc = tmp_path / "gateway"
    write_toml(etc / "models.toml", catalogue)
    neurons = {"n1": f"http://127.0.0.1:{neuron_port}"}
    gateway_config = write_toml(etc / "cortex.toml", gateway_toml(gateway_port, neurons, gateway_extra))
    neuron = Daemon(
        ["neuron", "--config", str(neuron_config)], neuron_port, home / "neuron.log", {"HF_HUB_OFFLINE": "1"}
    )
    gateway = Daemon(["serve", "--config", str(gateway_config)], gateway_port, etc / "gateway.log")
    try:
        neuron.start()
        gateway.start()  # in parallel: both pay for their imports at start-up
        neuron.wait_healthy()
        wait_nodes_up(gateway, 1)
        yield gateway
    finally:
        gateway.stop()
        neuron.stop()
