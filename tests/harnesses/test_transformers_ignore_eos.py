"""``ignore_eos`` runs to ``max_tokens`` even when the model emits EOS early (vLLM's meaning).

A random tiny model rarely samples EOS, so a forward hook makes it likely: from a chosen step on,
the EOS logit is raised far above the rest. That is a model that "wants" to stop early, which is
exactly the case ``ignore_eos`` exists for (benchmarks that need a fixed output length).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from cortex_kernel.openai_wire import ChatRequest, CompletionRequest
from tests.deltas import collect, usage_of

if TYPE_CHECKING:
    from torch import nn

    from cortex_transformers.harness import TransformersHarness

pytestmark = pytest.mark.slow

MODEL = "tiny-chat"


@contextlib.contextmanager
def eos_from_step(harness: TransformersHarness, step: int) -> Iterator[list[int]]:
    """Make the model prefer EOS from its ``step``-th generated token on (1 is the first)."""
    handles = harness.handles(MODEL)
    eos = handles.tokenizer.eos_token_id
    calls: list[int] = []

    def boost(_module: nn.Module, _inputs: tuple[Any, ...], output: Any) -> Any:
        calls.append(1)
        if len(calls) >= step:
            output.logits[..., eos] += 1000.0
        return output

    hook = handles.model.register_forward_hook(boost)
    try:
        yield calls
    finally:
        hook.remove()


@pytest.mark.parametrize("step", [1, 3])
@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 1.0, "seed": 7}])
async def test_the_hook_makes_the_model_stop_early(
    loaded: TransformersHarness, step: int, sampling: dict[str, Any]
) -> None:
    request = ChatRequest(
        model=MODEL, messages=[{"role": "user", "content": "Go on."}], max_tokens=12, **sampling
    )
    with eos_from_step(loaded, step):
        deltas = await collect(loaded.chat(MODEL, request))
    assert deltas[-1].finish_reason == "stop"
    assert usage_of(deltas).completion_tokens == step


@pytest.mark.parametrize("step", [1, 3])
@pytest.mark.parametrize(
    "sampling",
    [{"temperature": 0}, {"temperature": 1.0, "seed": 7}, {"temperature": 0.8, "top_p": 0.9, "seed": 42}],
)
@pytest.mark.parametrize("prompt", ["Go on.", "Tell me a long story about the sea."])
async def test_ignore_eos_yields_exactly_max_tokens_in_chat(
    loaded: TransformersHarness, step: int, sampling: dict[str, Any], prompt: str
) -> None:
    request = ChatRequest(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=12,
        ignore_eos=True,
        **sampling,
    )
    with eos_from_step(loaded, step):
        deltas = await collect(loaded.chat(MODEL, request))
    assert deltas[-1].finish_reason == "length"
    assert usage_of(deltas).completion_tokens == 12


@pytest.mark.parametrize("seed", [None, 1, 2])
async def test_ignore_eos_yields_exactly_max_tokens_in_completions(
    loaded: TransformersHarness, seed: int | None
) -> None:
    request = CompletionRequest(
        model=MODEL,
        prompt="Once upon a time",
        max_tokens=9,
        ignore_eos=True,
        temperature=0 if seed is None else 1.0,
        seed=seed,
    )
    with eos_from_step(loaded, 2):
        deltas = await collect(loaded.complete(MODEL, request))
    assert deltas[-1].finish_reason == "length"
    assert usage_of(deltas).completion_tokens == 9
