"""One real fleet per test module: a gateway (keys, an alias) over one neuron (a token)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.campaign.fleet import Fleet, start_fleet


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path, tiny_embed_model: Path
) -> Iterator[Fleet]:
    started = start_fleet(tmp_path_factory.mktemp("campaign"), (tiny_chat_model, tiny_embed_model))
    yield started
    started.stop()
