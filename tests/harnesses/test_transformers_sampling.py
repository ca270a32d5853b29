"""Sampling: which setting wins, and that the fused sampler draws from the right distribution."""

from __future__ import annotations

import collections
import math
from types import SimpleNamespace

import pytest
import torch

from cortex_kernel.errors import BadRequest
from cortex_transformers.sampling import (
    SamplingParams,
    logits_processors,
    model_sampling_defaults,
    resolve_sampling,
)

CPU = torch.device("cpu")


def draws(
    params: SamplingParams, probs: list[float], n: int = 4000, prompt: tuple[int, ...] = (1, 2)
) -> collections.Counter[int]:
    processors = logits_processors(params, prompt_length=len(prompt), device=CPU)
    input_ids = torch.tensor([list(prompt)])
    scores = torch.log(torch.tensor([probs]))
    counts: collections.Counter[int] = collections.Counter()
    for _ in range(n):
        # transformers types input_ids as LongTensor, which torch.tensor's Tensor does not narrow to.
        out = processors(input_ids, scores.clone())  # type: ignore[arg-type]
        assert torch.isfinite(out).sum() == 1, "exactly one token is left for the greedy step"
        counts[int(out.argmax())] += 1
    return counts


def test_request_then_model_then_openai_defaults() -> None:
    model = model_sampling_defaults(SimpleNamespace(do_sample=True, temperature=0.6, top_p=0.9, top_k=20))
    assert model == {"do_sample": True, "temperature": 0.6, "top_p": 0.9, "top_k": 20}
    resolved = resolve_sampling(temperature=None, top_p=0.5, top_k=None, seed=1, model_defaults=model)
    assert (resolved.temperature, resolved.top_p, resolved.top_k, resolved.seed) == (0.6, 0.5, 20, 1)
    plain = resolve_sampling(temperature=None, top_p=None, top_k=None, seed=None)
    assert (plain.temperature, plain.top_p, plain.top_k, plain.min_p) == (1.0, 1.0, 0, 0.0)
    assert not plain.greedy


def test_greedy_cases() -> None:
    assert resolve_sampling(temperature=0.0, top_p=None, top_k=None, seed=None).greedy
    assert resolve_sampling(temperature=0.9, top_p=None, top_k=1, seed=None).greedy
    off = resolve_sampling(
        temperature=None, top_p=None, top_k=None, seed=None, model_defaults={"do_sample": False}
    )
    assert off.greedy
    assert resolve_sampling(temperature=1.0, top_p=None, top_k=-1, seed=None).top_k == 0
    assert len(logits_processors(off, prompt_length=0, device=CPU)) == 0  # plain greedy costs nothing
    with pytest.raises(BadRequest):
        resolve_sampling(temperature=None, top_p=None, top_k=None, seed=None, repetition_penalty=0.0)


def test_draws_follow_the_distribution() -> None:
    probs = [0.5, 0.3, 0.15, 0.05]
    counts = draws(SamplingParams(seed=3), probs)
    total = sum(counts.values())
    for token, p in enumerate(probs):
        assert abs(counts[token] / total - p) < 4 * math.sqrt(p * (1 - p) / total) + 0.005, counts


def test_temperature_sharpens() -> None:
    counts = draws(SamplingParams(temperature=0.25, seed=4), [0.5, 0.3, 0.15, 0.05])
    assert counts[0] / sum(counts.values()) > 0.8


@pytest.mark.parametrize(
    ("params", "allowed"),
    [
        (SamplingParams(top_k=2, seed=5), {0, 1}),
        (SamplingParams(top_p=0.5, seed=6), {0}),
        (SamplingParams(top_p=0.7, seed=7), {0, 1}),
        (SamplingParams(min_p=0.4, seed=8), {0, 1}),
    ],
)
def test_truncation(params: SamplingParams, allowed: set[int]) -> None:
    assert set(draws(params, [0.6, 0.3, 0.07, 0.03], n=1500)) == allowed


def test_the_seed_reproduces_the_draws() -> None:
    probs = [0.25, 0.25, 0.25, 0.25]

    def sequence(seed: int) -> list[int]:
        processors = logits_processors(SamplingParams(seed=seed), prompt_length=0, device=CPU)
        scores = torch.log(torch.tensor([probs]))
        return [int(processors(torch.tensor([[0]]), scores.clone()).argmax()) for _ in range(64)]  # type: ignore[arg-type]

    assert sequence(11) == sequence(11) != sequence(12)


def test_penalties_touch_generated_tokens_only() -> None:
    params = SamplingParams(temperature=0.0, presence_penalty=1.0, frequency_penalty=0.5)
    processors = logits_processors(params, prompt_length=2, device=CPU)
    scores = torch.zeros(1, 4)
    # input_ids are typed LongTensor in transformers, which torch.tensor's Tensor does not narrow to.
    out = processors(torch.tensor([[3, 3, 1, 1, 2]]), scores.clone())  # type: ignore[arg-type]  # prompt: 3, 3; generated: 1, 1, 2
    assert out.tolist() == [[0.0, -2.0, -1.5, 0.0]]
    repeated = logits_processors(
        SamplingParams(temperature=0.0, repetition_penalty=2.0), prompt_length=0, device=CPU
    )
    assert repeated(torch.tensor([[1]]), torch.tensor([[1.0, 1.0]])).tolist() == [[1.0, 0.5]]  # type: ignore[arg-type]
