"""Sentence embeddings: pooling the encoder's hidden states the way the checkpoint says.

Embedding checkpoints declare their pooling in sentence-transformers' ``modules.json`` and
``<n>_Pooling/config.json``; pooling differently from training gives vectors that look fine and
rank badly, so the declaration is honoured, a profile may override it (``options.pooling``),
and only a checkpoint that declares nothing gets mean pooling.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cortex_kernel.errors import BadRequest, CortexError
from cortex_kernel.harness import ContextLengthExceeded

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len", "weightedmean", "lasttoken")
# sentence-transformers' flags, in the order it concatenates them.
_ST_FLAGS = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
    ("pooling_mode_weightedmean_tokens", "weightedmean"),
    ("pooling_mode_lasttoken", "lasttoken"),
)
_SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")


@dataclass(frozen=True)
class Pooling:
    """How token states become one vector; several modes are concatenated, as in ST."""

    modes: tuple[str, ...] = ("mean",)
    declared_by: str = "default"


def _read_json(location: str, filename: str, hub_kwargs: dict[str, Any]) -> Any:
    local = Path(location)
    if local.is_dir():
        path = local / filename
        return json.loads(path.read_text()) if path.is_file() else None
    from transformers.utils.hub import cached_file

    resolved = cached_file(location, filename, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
    return json.loads(Path(resolved).read_text()) if resolved else None


def read_pooling(
    location: str, *, override: str | None = None, hub_kwargs: dict[str, Any] | None = None
) -> Pooling:
    """The pooling for the checkpoint at ``location`` (a directory or a hub id).

    :raises BadRequest: an unknown override, or a sentence-transformers pipeline with modules
        this harness cannot run (a ``Dense`` projection, for instance).
    """
    if override is not None:
        if override not in POOLING_MODES:
            raise BadRequest(f"unknown pooling {override!r}; choose one of {', '.join(POOLING_MODES)}")
        return Pooling((override,), "profile")
    modules = _read_json(location, "modules.json", hub_kwargs or {})
    if not isinstance(modules, list):
        return Pooling()
    pooling = Pooling()
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind not in _SUPPORTED_MODULES:
            raise BadRequest(
                f"the checkpoint's sentence-transformers module {kind!r} is not supported by the "
                "transformers harness",
                code="unsupported_model",
            )
        if kind == "Pooling":
            config = _read_json(location, f"{module.get('path', '')}/config.json", hub_kwargs or {}) or {}
            modes = tuple(mode for flag, mode in _ST_FLAGS if config.get(flag))
            if modes:
                pooling = Pooling(modes, "modules.json")
    return pooling


def pool(hidden: torch.Tensor, mask: torch.Tensor, modes: tuple[str, ...]) -> torch.Tensor:
    """Pool ``hidden`` (batch, tokens, width) over the tokens where ``mask`` is 1."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    counts = weights.sum(dim=1).clamp(min=1.0)
    pooled = []
    for mode in modes:
        if mode == "cls":
            pooled.append(hidden[:, 0])
        elif mode == "max":
            pooled.append(hidden.masked_fill(weights == 0, float("-inf")).amax(dim=1))
        elif mode == "mean":
            pooled.append((hidden * weights).sum(dim=1) / counts)
        elif mode == "mean_sqrt_len":
            pooled.append((hidden * weights).sum(dim=1) / counts.sqrt())
        elif mode == "weightedmean":
            positions = torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=hidden.dtype)
            position_weights = weights * positions.view(1, -1, 1)
            pooled.append((hidden * position_weights).sum(dim=1) / position_weights.sum(dim=1).clamp(min=1.0))
        elif mode == "lasttoken":
            positions = torch.arange(hidden.shape[1], device=hidden.device)
            last = (mask.to(torch.long) * positions).argmax(dim=1)
            pooled.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])
        else:  # pragma: no cover - read_pooling only lets known modes through
            raise CortexError(f"unknown pooling mode {mode!r}")
    return torch.cat(pooled, dim=-1)


def embed_texts(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    *,
    pooling: Pooling,
    normalize: bool,
    max_tokens: int | None,
    batch_size: int = 32,
) -> tuple[list[list[float]], int]:
    """Embed ``texts`` (blocking; run it off the event loop). Returns vectors and token count.

    :raises ContextLengthExceeded: an input is longer than ``max_tokens``; inputs are never
        silently truncated, as truncation changes the meaning of the vector.
    """
    encodings = tokenizer(texts, add_special_tokens=True)["input_ids"]
    if max_tokens is not None:
        for index, ids in enumerate(encodings):
            if len(ids) > max_tokens:
                error = ContextLengthExceeded(len(ids), max_tokens)
                error.param = f"input[{index}]" if len(texts) > 1 else "input"
                raise error
    total_tokens = sum(len(ids) for ids in encodings)
    vectors: list[list[float]] = []
    device = model.device
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer.pad(
                {"input_ids": encodings[start : start + batch_size]}, padding=True, return_tensors="pt"
            )
            input_ids = batch["input_ids"].to(device)
            mask = batch["attention_mask"].to(device)
            hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            pooled = pool(hidden.float(), mask, pooling.modes)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=-1)
            vectors.extend(pooled.cpu().tolist())
    if any(not math.isfinite(x) for vector in vectors for x in vector):
        raise CortexError("the model produced non-finite embeddings", code="embedding_failed")
    return vectors, total_tokens
