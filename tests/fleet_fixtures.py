"""Shared fixtures: real neuron processes on loopback serving the tiny synthetic models, and SDK
clients that are always closed (loaded from tests/conftest.py through ``pytest_plugins``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.daemons import Daemon, Started, free_port, gateway_toml, model_toml, toml_str, write_toml

TOKEN = "neuron-test-token"


def models_toml(chat: Path, embed: Path) -> str:
    return (
        model_toml("tiny-chat", chat, vram_mb=16)
        + model_toml("tiny-embed", embed, task="embedding")
        + model_toml("never-loaded", chat)
    )


@pytest.fixture
def start_neuron(
    tmp_path: Path, tiny_chat_model: Path, tiny_embed_model: Path
) -> Iterator[Callable[..., Daemon]]:
    """Start a neuron with a catalogue of the tiny models; extra TOML lines go into neuron.toml."""

    def start(extra: str = "", token: str | None = None, default_models: str = "[]") -> Daemon:
        port = free_port()
        home = tmp_path / f"neuron-{port}"
        roots = sorted({str(tiny_chat_model.parent), str(tiny_embed_model.parent)})
        write_toml(home / "models.toml", models_toml(tiny_chat_model, tiny_embed_model))
        config = write_toml(
            home / "neuron.toml",
            f"""
listen = "127.0.0.1:{port}"
name = "test-neuron"
cache_dir = {toml_str(home / "cache")}
model_roots = {roots!r}
default_models = {default_models}
{f"token = {toml_str(token)}" if token else ""}
{extra}
""".replace("'", '"'),
        )
        daemon = Daemon(
            ["neuron", "--config", str(config)], port, home / "neuron.log", env={"HF_HUB_OFFLINE": "1"}
        )
        return started.healthy(daemon)

    with Started() as started:
        yield start


@pytest.fixture
def openai_client() -> Iterator[Callable[..., openai.OpenAI]]:
    """Build ``openai.OpenAI`` clients for a base URL; all are closed after the test."""
    clients: list[openai.OpenAI] = []

    def build(base_url: str, api_key: str = "unused") -> openai.OpenAI:
        client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=120)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


async def gather_with_client(
    base_url: str, work: Callable[[openai.AsyncOpenAI], list[Awaitable[Any]]], api_key: str = "unused"
) -> list[Any]:
    """Run the coroutines ``work(client)`` returns concurrently with one async client, then close it."""
    import asyncio

    async with openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=120) as client:
        return await asyncio.gather(*work(client))


@pytest.fixture
def start_gateway(
    tmp_path: Path, tiny_chat_model: Path, tiny_embed_model: Path
) -> Iterator[Callable[..., Daemon]]:
    """Start a gateway over the given neurons with the tiny-model catalogue (plus extra TOML)."""

    def start(neurons: dict[str, Daemon], extra: str = "", catalogue_extra: str = "") -> Daemon:
        port = free_port()
        etc = tmp_path / f"gateway-{port}"
        catalogue = models_toml(tiny_chat_model, tiny_embed_model) + catalogue_extra
        write_toml(etc / "models.toml", catalogue)
        urls = {name: neuron.url for name, neuron in neurons.items()}
        config = write_toml(etc / "cortex.toml", gateway_toml(port, urls, extra))
        return started.healthy(Daemon(["serve", "--config", str(config)], port, etc / "gateway.log"))

    with Started() as started:
        yield start
