"""Embeddings follow the checkpoint's pooling declaration and normalise on request."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.errors import BadRequest
from cortex_kernel.harness import ContextLengthExceeded
from cortex_kernel.openai_wire import ChatRequest
from cortex_transformers.embedding import Pooling, pool, read_pooling
from cortex_transformers.synthetic import build_tiny_embedding_model

if TYPE_CHECKING:
    from cortex_transformers.harness import TransformersHarness

pytestmark = pytest.mark.slow

TEXTS = ["first text", "a second, rather longer text to embed", "x"]


def reference_vectors(path: Path, texts: list[str], mode: str) -> list[torch.Tensor]:
    """What pooling should give, computed directly with the Auto classes."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path)
    vectors: list[torch.Tensor] = []
    with torch.inference_mode():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt")
            hidden = model(**ids).last_hidden_state[0]
            vectors.append(hidden[0] if mode == "cls" else hidden.mean(dim=0))
    return vectors


def assert_close(got: list[float], expected: torch.Tensor) -> None:
    assert torch.allclose(torch.tensor(got), expected, atol=1e-5), (got[:4], expected[:4])


async def test_mean_pooling_from_modules_json(
    harness: TransformersHarness, tiny_embed_profile: ModelProfile, tiny_embed_model: Path
) -> None:
    await harness.load(tiny_embed_profile)
    result = await harness.embed("tiny-embed", TEXTS, normalize=False)
    for got, expected in zip(result.vectors, reference_vectors(tiny_embed_model, TEXTS, "mean"), strict=True):
        assert_close(got, expected)


async def test_cls_pooling_from_modules_json(harness: TransformersHarness, tmp_path: Path) -> None:
    path = build_tiny_embedding_model(tmp_path / "models" / "tiny-embed-cls", pooling="cls")
    profile = ModelProfile(
        id="cls", harness="transformers", source=str(path), task="embedding", min_devices=0
    )
    await harness.load(profile)
    result = await harness.embed("cls", TEXTS, normalize=False)
    for got, expected in zip(result.vectors, reference_vectors(path, TEXTS, "cls"), strict=True):
        assert_close(got, expected)


async def test_profile_option_overrides_pooling(harness: TransformersHarness, tiny_embed_model: Path) -> None:
    profile = ModelProfile(
        id="as-cls",
        harness="transformers",
        source=str(tiny_embed_model),
        task="embedding",
        min_devices=0,
        options={"pooling": "cls"},
    )
    await harness.load(profile)
    result = await harness.embed("as-cls", TEXTS[:1], normalize=False)
    assert_close(result.vectors[0], reference_vectors(tiny_embed_model, TEXTS[:1], "cls")[0])


async def test_normalised_vectors_are_unit_length_and_batch_independent(
    harness: TransformersHarness, tiny_embed_profile: ModelProfile
) -> None:
    await harness.load(tiny_embed_profile)
    batch = await harness.embed("tiny-embed", TEXTS, normalize=True)
    for vector in batch.vectors:
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, abs_tol=1e-5)
    for index, text in enumerate(TEXTS):  # padding in a batch must not change a vector
        alone = await harness.embed("tiny-embed", [text], normalize=True)
        assert_close(alone.vectors[0], torch.tensor(batch.vectors[index]))
    raw = await harness.embed("tiny-embed", TEXTS, normalize=False)
    assert not math.isclose(math.sqrt(sum(x * x for x in raw.vectors[0])), 1.0, abs_tol=1e-3)


async def test_prompt_tokens_count_every_input(
    harness: TransformersHarness, tiny_embed_profile: ModelProfile, tiny_embed_model: Path
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_embed_model)
    await harness.load(tiny_embed_profile)
    result = await harness.embed("tiny-embed", TEXTS, normalize=True)
    assert result.prompt_tokens == sum(len(tokenizer(text)["input_ids"]) for text in TEXTS)


async def test_too_long_input_is_an_error_not_a_truncation(
    harness: TransformersHarness, tiny_embed_profile: ModelProfile
) -> None:
    await harness.load(tiny_embed_profile)
    with pytest.raises(ContextLengthExceeded) as caught:
        await harness.embed("tiny-embed", ["short", "word " * 600], normalize=True)
    assert caught.value.limit == 512 and caught.value.param == "input[1]"


async def test_wrong_task_is_a_clear_bad_request(
    harness: TransformersHarness, tiny_chat_profile: ModelProfile, tiny_embed_profile: ModelProfile
) -> None:
    await harness.load(tiny_chat_profile)
    await harness.load(tiny_embed_profile)
    with pytest.raises(BadRequest, match="chat model"):
        await harness.embed("tiny-chat", ["hello"], normalize=True)
    request = ChatRequest(model="tiny-embed", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(BadRequest, match="embedding model"):
        [delta async for delta in harness.chat("tiny-embed", request)]
    with pytest.raises(BadRequest, match="embedding model"):
        await harness.count_tokens("tiny-embed", request)
    with pytest.raises(BadRequest):
        await harness.embed("tiny-embed", [], normalize=True)


def test_pool_modes_on_a_padded_batch() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert pool(hidden, mask, ("mean",)).tolist() == [[2.0, 3.0], [7.0, 8.0]]
    assert pool(hidden, mask, ("cls",)).tolist() == [[1.0, 2.0], [5.0, 6.0]]
    assert pool(hidden, mask, ("max",)).tolist() == [[3.0, 4.0], [9.0, 10.0]]
    assert pool(hidden, mask, ("lasttoken",)).tolist() == [[3.0, 4.0], [9.0, 10.0]]
    assert pool(hidden, mask, ("cls", "mean")).shape == (2, 4)  # concatenated, as in ST


def test_read_pooling(tmp_path: Path) -> None:
    assert read_pooling(str(tmp_path)) == Pooling(("mean",), "default")
    path = build_tiny_embedding_model(tmp_path / "m", pooling="lasttoken")
    assert read_pooling(str(path)) == Pooling(("lasttoken",), "modules.json")
    assert read_pooling(str(path), override="max") == Pooling(("max",), "profile")
    with pytest.raises(BadRequest):
        read_pooling(str(path), override="median")
    (path / "modules.json").write_text('[{"type": "sentence_transformers.models.Dense", "path": "2_Dense"}]')
    with pytest.raises(BadRequest, match="Dense"):
        read_pooling(str(path))
