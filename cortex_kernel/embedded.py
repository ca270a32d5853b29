"""The embedded single-host default: a gateway plus one in-process neuron on loopback.

Used by ``cortex-kernel serve`` when no ``[[neurons]]`` are configured, which includes a fresh
machine with no configuration at all. The neuron uses the transformers harness on whatever
device is present; the default catalogue holds a synthetic smoke-test model that the harness
builds locally on first use, so the quick start works offline.
"""

from __future__ import annotations

import socket
import tomllib
from dataclasses import replace
from typing import Any

import msgspec

from cortex_kernel.config.addresses import ListenAddress
from cortex_kernel.config.loader import LoadedConfig
from cortex_kernel.config.schema import Catalogue, CortexConfig, NeuronConfig, NeuronEndpoint

EMBEDDED_NODE = "local"
SMOKE_MODEL_ID = "cortex-smoke-tiny"

DEFAULT_CATALOGUE = f"""
# The embedded default catalogue. Replace it with a models.toml next to cortex.toml.
[[models]]
id = "{SMOKE_MODEL_ID}"
harness = "transformers"
source = "synthetic:tiny-chat"
description = "Smoke-test model: random weights, a real tokenizer and chat template. Output is noise."
task = "chat"
min_devices = 0
vram_mb = 64
context_length = 8192

# Real models, for a host that can reach a model hub or has the weights on disk:
# [[models]]
# id = "Qwen/Qwen3-0.6B"
# harness = "transformers"
# min_devices = 0
# vram_mb = 1600
"""


def default_catalogue() -> Catalogue:
    """The catalogue used when no ``models.toml`` was found."""
    return msgspec.convert(tomllib.loads(DEFAULT_CATALOGUE), Catalogue)


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def embedded_setup(
    gateway: LoadedConfig[Any],
) -> tuple[LoadedConfig[Any], LoadedConfig[Any], ListenAddress]:
    """Return the gateway config pointed at a local neuron, that neuron's config and address."""
    catalogue = gateway.catalogue if gateway.catalogue.models else default_catalogue()
    address = ListenAddress("127.0.0.1", _free_loopback_port())
    preload = [SMOKE_MODEL_ID] if catalogue.get(SMOKE_MODEL_ID) else []
    neuron_config = NeuronConfig(
        listen=f"127.0.0.1:{address.port}",
        name=EMBEDDED_NODE,
        token=gateway.value.gateway.neuron_token,
        default_models=list(preload),
        limits=gateway.value.limits,
        server=gateway.value.gateway.server,
    )
    neuron = LoadedConfig(
        kind="neuron",
        value=neuron_config,
        path=None,
        sources={"listen": "embedded", "name": "embedded", "default_models": "embedded"},
        catalogue=catalogue,
        catalogue_path=gateway.catalogue_path,
    )
    cortex: CortexConfig = gateway.value
    pointed = msgspec.structs.replace(
        cortex, neurons=[NeuronEndpoint(name=EMBEDDED_NODE, endpoint=f"http://127.0.0.1:{address.port}")]
    )
    sources = dict(gateway.sources)
    sources["neurons"] = "embedded"
    return replace(gateway, value=pointed, sources=sources, catalogue=catalogue), neuron, address
