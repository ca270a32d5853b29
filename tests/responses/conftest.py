"""Fixtures for the Responses dialect: the gateway app in-process in front of the scripted neuron
double (:mod:`tests.anthropic.scripted`), driven by the official ``openai`` SDK, and a real
``cortex-kernel serve`` + ``cortex-kernel neuron`` pair with the tiny model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp

from cortex_responses.dialect import ResponsesDialect
from tests import dialect_gateway
from tests.anthropic.scripted import MODEL
from tests.daemons import Daemon
from tests.dialect_gateway import dialect_gateway_app, gateway, make_gateway, neuron  # noqa: F401 (fixtures)

FAST_KEEPALIVE_S = 0.05


def gateway_app(
    neuron_url: str, *, catalogue: tuple[str, ...] = (MODEL,), dialect: ResponsesDialect | None = None
) -> ASGIApp:
    """The real gateway app (gateway plugin + this dialect) pointed at one neuron."""
    return dialect_gateway_app(
        neuron_url,
        dialect or ResponsesDialect(keepalive_s=FAST_KEEPALIVE_S),
        catalogue=catalogue,
        embedding=("embedder",),
    )


@pytest.fixture
def dialect_app() -> Callable[..., ASGIApp]:
    return gateway_app


@pytest.fixture
def dialect_sdk() -> Callable[[TestClient], openai.OpenAI]:
    """The SDK client the shared fixtures drive this dialect with."""

    def sdk(http: TestClient) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{http.base_url}/v1", api_key="client-key", http_client=http, max_retries=0
        )

    return sdk


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
    ) as daemon:
        yield daemon
