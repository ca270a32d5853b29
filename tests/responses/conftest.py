"""Fixtures for the Responses dialect: the gateway app in-process in front of the scripted neuron
double (:mod:`tests.anthropic.scripted`), driven by the official ``openai`` SDK, and a real
``cortex-kernel serve`` + ``cortex-kernel neuron`` pair with the tiny model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from cortex_responses.dialect import ResponsesDialect
from tests import dialect_gateway
from tests.anthropic.scripted import MODEL, ScriptedNeuron
from tests.daemons import Daemon
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


Gateway = dialect_gateway.Gateway[openai.OpenAI]


@pytest.fixture
def neuron(scripted_neuron: ScriptedNeuron) -> ScriptedNeuron:
    return scripted_neuron


@pytest.fixture
def make_gateway(neuron: ScriptedNeuron) -> Iterator[Callable[..., Gateway]]:
    """Build gateways in front of ``neuron``; keyword arguments go to :func:`gateway_app`."""

    def sdk(http: TestClient) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{http.base_url}/v1", api_key="client-key", http_client=http, max_retries=0
        )

    with dialect_gateway.gateway_maker(neuron, gateway_app, sdk) as make:
        yield make


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway()


# ---------------------------------------------------------------------------------------------
# A real gateway in front of a real neuron serving the tiny synthetic chat model.

TINY_CONTEXT = 64


@pytest.fixture(scope="module")
def real_fleet(tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path) -> Iterator[Daemon]:
    """A real gateway + neuron pair (:func:`tests.dialect_gateway.real_fleet`) with a small
    response store; yields the gateway (its ``url`` and ``log_text``)."""
    tmp_path = tmp_path_factory.mktemp("responses-fleet")
    store = "\n[responses]\nstore_max_responses = 64\nstore_ttl_s = 600\n"
    with dialect_gateway.real_fleet(
        tmp_path, tiny_chat_model, short_context=TINY_CONTEXT, gateway_extra=store
    ) as gateway:
        yield gateway
