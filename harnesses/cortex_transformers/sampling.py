"""Sampling parameters: which value wins, and the logits processors that apply them.

Precedence is the request, then the model's own ``generation_config.json`` (its authors tuned
it), then OpenAI's defaults (temperature 1, top_p 1, no top-k). ``temperature == 0`` is greedy.

Sampling draws from a per-request ``torch.Generator`` inside a logits processor, instead of
``generate(do_sample=True)``, which draws from torch's process-wide generator: with several
generations running on worker threads, a process-wide generator makes ``seed`` meaningless.
The processor leaves one finite logit, so ``generate``'s greedy step picks the sampled token.

Everything is fused into one processor because ``generate`` pays a per-processor cost on every
step (it inspects each processor's signature), and the draw uses the inverse CDF rather than
``torch.multinomial``, whose fixed cost dominates a single-row draw on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

from cortex_kernel.errors import BadRequest

_GREEDY_BELOW = 1e-5


@dataclass(frozen=True)
class SamplingParams:
    """Resolved sampling settings for one request."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature < _GREEDY_BELOW or self.top_k == 1


def model_sampling_defaults(generation_config: Any) -> dict[str, Any]:
    """The sampling values a checkpoint's ``generation_config.json`` sets explicitly."""
    if generation_config is None:
        return {}
    defaults: dict[str, Any] = {}
    for key in ("do_sample", "temperature", "top_p", "top_k", "min_p", "repetition_penalty"):
        value = getattr(generation_config, key, None)
        if value is not None:
            defaults[key] = value
    return defaults


def resolve_sampling(
    *,
    temperature: float | None,
    top_p: float | None,
    top_k: int | None,
    seed: int | None,
    min_p: float | None = None,
    repetition_penalty: float | None = None,
    presence_penalty: float | None = None,
    frequency_penalty: float | None = None,
    model_defaults: dict[str, Any] | None = None,
) -> SamplingParams:
    """Apply the precedence request > model generation config > OpenAI defaults."""
    model = model_defaults or {}
    if temperature is None:  # a checkpoint that turns sampling off is greedy by default
        temperature = 0.0 if model.get("do_sample") is False else float(model.get("temperature", 1.0))
    if top_k is None:
        top_k = int(model.get("top_k", 0))
    if repetition_penalty is not None and repetition_penalty <= 0:
        raise BadRequest("'repetition_penalty' must be > 0", code="invalid_value", param="repetition_penalty")
    return SamplingParams(
        temperature=temperature,
        top_p=float(top_p if top_p is not None else model.get("top_p", 1.0)),
        top_k=max(0, top_k),  # -1 and 0 both mean "off"
        min_p=float(min_p if min_p is not None else model.get("min_p", 0.0)),
        repetition_penalty=float(
            repetition_penalty if repetition_penalty is not None else model.get("repetition_penalty", 1.0)
        ),
        presence_penalty=presence_penalty or 0.0,
        frequency_penalty=frequency_penalty or 0.0,
        seed=seed,
    )


class _Sampler(LogitsProcessor):
    """Penalties, then (unless greedy) temperature, top-k, top-p, min-p and a seeded draw."""

    def __init__(self, params: SamplingParams, *, prompt_length: int, device: torch.device) -> None:
        self._params = params
        self._prompt_length = prompt_length
        self._repetition = (
            RepetitionPenaltyLogitsProcessor(params.repetition_penalty)
            if params.repetition_penalty != 1.0
            else None
        )
        self._generator: torch.Generator | None = None
        if not params.greedy:
            self._generator = torch.Generator(device=device)
            if params.seed is None:
                self._generator.seed()
            else:
                self._generator.manual_seed(params.seed & 0xFFFF_FFFF_FFFF_FFFF)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        params = self._params
        if self._repetition is not None:
            scores = self._repetition(input_ids, scores)
        if params.presence_penalty or params.frequency_penalty:
            scores = self._penalise(input_ids, scores)
        if self._generator is None:
            return scores
        return self._draw(scores)  # type: ignore[return-value]

    def _penalise(self, input_ids: torch.Tensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """OpenAI's presence and frequency penalties, over generated tokens only (not the prompt)."""
        generated = input_ids[:, self._prompt_length :]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(
            1, generated, torch.ones_like(generated, dtype=scores.dtype)
        )
        penalty = self._params.frequency_penalty * counts + self._params.presence_penalty * (counts > 0).to(
            scores.dtype
        )
        return scores - penalty  # type: ignore[return-value]

    def _draw(self, scores: torch.Tensor) -> torch.Tensor:
        params = self._params
        if params.temperature != 1.0:
            scores = scores / params.temperature
        if 0 < params.top_k < scores.shape[-1]:
            kth = torch.topk(scores, params.top_k, dim=-1).values[..., -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        probs = torch.softmax(scores.float(), dim=-1)
        if params.top_p < 1.0:
            ordered, order = probs.sort(dim=-1, descending=True)
            # Drop a token when the tokens more likely than it already reach top_p (keeps >= 1).
            drop = (ordered.cumsum(dim=-1) - ordered) >= params.top_p
            probs = probs.masked_fill(drop.scatter(-1, order, drop), 0.0)
        if params.min_p > 0.0:
            probs = probs.masked_fill(probs < params.min_p * probs.amax(dim=-1, keepdim=True), 0.0)
        cdf = probs.double().cumsum(dim=-1)
        point = torch.rand((cdf.shape[0], 1), dtype=cdf.dtype, device=cdf.device, generator=self._generator)
        chosen = torch.searchsorted(cdf, point * cdf[:, -1:], right=True).clamp_(max=cdf.shape[-1] - 1)
        return torch.full_like(scores, float("-inf")).scatter_(1, chosen, 0.0)


def logits_processors(
    params: SamplingParams, *, prompt_length: int, device: torch.device
) -> LogitsProcessorList:
    """The processors ``generate`` runs each step to apply ``params``; none for plain greedy."""
    processors = LogitsProcessorList()
    penalised = params.repetition_penalty != 1.0 or params.presence_penalty or params.frequency_penalty
    if penalised or not params.greedy:
        processors.append(_Sampler(params, prompt_length=prompt_length, device=device))
    return processors
