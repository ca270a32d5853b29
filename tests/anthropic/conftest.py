"""Fixtures for the Anthropic dialect: the gateway app in-process in front of a scripted neuron,
driven by the official ``anthropic`` SDK, and a real gateway + neuron pair with the tiny model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import anthropic
import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp

from cortex_anthropic.dialect import AnthropicDialect
from cortex_kernel.config.schema import AuthSection
from tests import dialect_gateway
from tests.anthropic.scripted import MODEL
from tests.dialect_gateway import dialect_gateway_app, gateway, make_gateway, neuron  # noqa: F401 (fixtures)

FAST_PINGS_S = 0.05


def gateway_app(
    neuron_url: str,
    *,
    catalogue: tuple[str, ...] = (MODEL,),
    aliases: dict[str, str] | None = None,
    embedding: tuple[str, ...] = (),
    dialect: AnthropicDialect | None = None,
    auth: AuthSection | None = None,
) -> ASGIApp:
    """The real gateway app (gateway plugin + this dialect) pointed at one neuron."""
    return dialect_gateway_app(
        neuron_url,
        dialect or AnthropicDialect(ping_every_s=FAST_PINGS_S),
        catalogue=catalogue,
        embedding=embedding,
        aliases=aliases,
        auth=auth,
    )


@pytest.fixture
def dialect_app() -> Callable[..., ASGIApp]:
    return gateway_app


@pytest.fixture
def dialect_sdk() -> Callable[[TestClient], anthropic.Anthropic]:
    """The SDK client the shared fixtures drive this dialect with."""

    def sdk(http: TestClient) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            base_url=str(http.base_url), api_key="client-key", http_client=http, max_retries=0
        )

    return sdk


# ---------------------------------------------------------------------------------------------
# A real gateway in front of a real neuron serving the tiny synthetic chat model.

TINY_CONTEXT = 64


@pytest.fixture(scope="module")
def real_fleet(tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path) -> Iterator[str]:
    """A real gateway + neuron pair (:func:`tests.dialect_gateway.real_fleet`); yields the gateway
    URL. ``claude-haiku`` is an alias of ``tiny-chat``; ``tiny-short`` exercises clamping and
    "prompt is too long"."""
    tmp_path = tmp_path_factory.mktemp("anthropic-fleet")
    aliases = '\n[aliases]\nclaude-haiku = "tiny-chat"\n'
    with dialect_gateway.real_fleet(
        tmp_path, tiny_chat_model, short_context=TINY_CONTEXT, catalogue_extra=aliases
    ) as daemon:
        yield daemon.url
