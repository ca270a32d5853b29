"""Fixtures shared by the whole test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from cortex_kernel.config.schema import ModelProfile

# ---------------------------------------------------------------------------------------------
# Tiny synthetic models (owned by the transformers harness; see tests/harnesses/).
#
# Built once per session into one directory, so that directory can serve as a neuron's
# ``model_roots``. Nothing is downloaded; each build takes well under a second.


@pytest.fixture(scope="session")
def tiny_model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory that holds the tiny models (use it as ``model_roots``)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_chat_model(tiny_model_root: Path) -> Path:
    """A random 2-layer, 64-wide Llama with a BPE tokenizer and a tools/thinking chat template."""
    from cortex_transformers.synthetic import build_tiny_chat_model

    return build_tiny_chat_model(tiny_model_root / "tiny-chat")


@pytest.fixture(scope="session")
def tiny_embed_model(tiny_model_root: Path) -> Path:
    """A random 2-layer BERT encoder that declares mean pooling (sentence-transformers layout)."""
    from cortex_transformers.synthetic import build_tiny_embedding_model

    return build_tiny_embedding_model(tiny_model_root / "tiny-embed")


@pytest.fixture
def tiny_chat_profile(tiny_chat_model: Path) -> ModelProfile:
    return ModelProfile(id="tiny-chat", harness="transformers", source=str(tiny_chat_model), min_devices=0)


@pytest.fixture
def tiny_embed_profile(tiny_embed_model: Path) -> ModelProfile:
    return ModelProfile(
        id="tiny-embed", harness="transformers", source=str(tiny_embed_model), task="embedding", min_devices=0
    )


# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Real daemons on loopback (neurons, gateways) and SDK clients: see tests/fleet_fixtures.py.

pytest_plugins = ["tests.fleet_fixtures"]
