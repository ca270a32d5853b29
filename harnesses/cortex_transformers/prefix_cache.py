"""A bounded LRU of KV caches, so a request that shares a prefix with a recent one skips its prefill.

A coding agent resends its whole conversation (system prompt, tools, history) on every turn, so
without reuse every turn prefills tens of thousands of tokens again. vLLM keeps the KV blocks of
recent sequences and reuses the longest cached prefix; this module gives the transformers
harness the same idea at sequence granularity:

- after a generation, the KV cache ``generate`` filled (prompt and generated tokens) is kept,
  keyed by the tokens it covers;
- a new prompt looks for the entry sharing its longest token prefix and starts ``generate`` from
  a *copy* of that many positions, leaving at least one prompt token to run, since ``generate``
  needs the logits of the prompt's last token;
- the tensors kept never exceed ``max_bytes``: the least recently used entries go first, an entry
  fully covered by a newer, longer one is dropped at once, and a sequence larger than the whole
  bound keeps only its leading part.

Entries are never handed out: ``DynamicCache.update`` grows a cache in place, so a request given a
stored object would change what the next request reuses, and two concurrent requests would race
on it. Every hit gets fresh tensors (a slice of the stored ones, cloned), and what is stored is
the cache a finished ``generate`` no longer touches.

Only models whose cache is the plain full-attention ``DynamicCache`` take part: a sliding-window,
linear-attention or static cache cannot be cut at an arbitrary position, so such models (and
transformers releases without per-layer caches) run as before, without reuse.
"""

from __future__ import annotations

import collections
import inspect
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

_TOKEN_BYTES = 8  # one int64 token id per position kept
# At most this many entries, whatever the byte bound allows: a lookup and a store compare the
# prompt with every entry, so a small model's tiny entries (tens of KB, tens of thousands under a
# 512 MB bound) would make each request scan them all. An agent's sessions need a few entries
# each; LRU keeps the live ones.
MAX_ENTRIES = 256


@dataclass(frozen=True)
class _Entry:
    """The KV tensors of one sequence: ``layers[i]`` is (keys, values), ``[1, heads, len(tokens), dim]``."""

    tokens: torch.Tensor  # 1-D, int64, on the CPU
    layers: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    nbytes: int


@dataclass(frozen=True)
class PrefixCacheStats:
    """What the cache holds and has saved, for the neuron's metrics and for tests."""

    entries: int
    bytes: int
    max_bytes: int
    lookups: int
    hits: int
    queried_tokens: int
    reused_tokens: int


class PrefixCache:
    """The prefix cache of one loaded model; safe to use from the harness's worker threads."""

    def __init__(
        self,
        model_config: Any,
        max_bytes: int,
        keyword: str = "past_key_values",
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self._config = model_config
        self.max_entries = max_entries
        # The name ``generate`` takes a cache by: ``cache`` from transformers 5 (which warns on the
        # old name), ``past_key_values`` before.
        self.keyword = keyword
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[int, _Entry] = collections.OrderedDict()
        self._next_key = 0
        self._bytes = 0
        self._lookups = 0
        self._hits = 0
        self._queried = 0
        self._reused = 0

    @classmethod
    def for_model(cls, model: Any, generation_config: Any, max_bytes: int) -> PrefixCache | None:
        """A cache for ``model``, or ``None`` when reuse is off (bound 0) or the model cannot take part."""
        if max_bytes <= 0:
            return None
        if getattr(generation_config, "cache_implementation", None) is not None:
            return None  # a static or offloaded cache of the checkpoint's choosing: not ours to swap
        try:
            from transformers import DynamicCache
            from transformers.cache_utils import DynamicLayer

            probe = DynamicCache(config=model.config)
            layers = getattr(probe, "layers", None)
        except (ImportError, TypeError, ValueError, AttributeError) as exc:
            log.info("prefix cache off for %s: %s", type(model).__name__, exc)
            return None
        if not layers or any(type(layer) is not DynamicLayer for layer in layers):
            log.info(
                "prefix cache off for %s: its KV cache is not plain full attention", type(model).__name__
            )
            return None
        try:
            parameters = inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            parameters = {}  # type: ignore[assignment]
        return cls(model.config, max_bytes, "cache" if "cache" in parameters else "past_key_values")

    def stats(self) -> PrefixCacheStats:
        with self._lock:
            return PrefixCacheStats(
                entries=len(self._entries),
                bytes=self._bytes,
                max_bytes=self.max_bytes,
                lookups=self._lookups,
                hits=self._hits,
                queried_tokens=self._queried,
                reused_tokens=self._reused,
            )

    def clear(self) -> None:
        """Drop every entry (the model is going to sleep or away, and its tensors with it)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def lookup(self, prompt_ids: Sequence[int]) -> tuple[int, Any]:
        """``(reused, cache)``: a fresh cache for ``generate`` holding the first ``reused`` positions.

        On a miss the cache is empty (``generate`` fills it, and :meth:`store` keeps it after).
        """
        from transformers import DynamicCache

        prompt = torch.tensor(list(prompt_ids), dtype=torch.long)
        limit = len(prompt) - 1  # generate must run at least the prompt's last token
        best: _Entry | None = None
        best_length = 0
        best_key = -1
        with self._lock:
            self._lookups += 1
            self._queried += len(prompt)
            for key, entry in self._entries.items():
                length = _common_prefix(entry.tokens, prompt, limit)
                if length > best_length:
                    best, best_length, best_key = entry, length, key
            if best is not None:
                self._entries.move_to_end(best_key)
                self._hits += 1
                self._reused += best_length
        if best is None:
            return 0, DynamicCache(config=self._config)
        # Outside the lock: the stored tensors are never written, only dropped, and ``best`` holds
        # them alive however the cache changes meanwhile.
        data = [
            (keys[:, :, :best_length].clone(), values[:, :, :best_length].clone())
            for keys, values in best.layers
        ]
        return best_length, DynamicCache(ddp_cache_data=data, config=self._config)

    def store(self, sequence: torch.Tensor, cache: Any) -> None:
        """Keep ``cache`` (which ``generate`` filled and no longer uses) for the tokens it covers.

        ``sequence`` is the prompt and the generated tokens; the cache covers its first
        ``cache.get_seq_length()`` tokens (the last generated token was never fed back).
        """
        layers = [(layer.keys, layer.values) for layer in getattr(cache, "layers", ())]
        if not layers or any(keys is None or values is None for keys, values in layers):
            return
        length = int(layers[0][0].shape[-2])
        if length < 1 or length > int(sequence.shape[-1]):
            return
        if any(int(k.shape[-2]) != length or int(v.shape[-2]) != length for k, v in layers):
            return  # not the plain layout this cache expects: keep nothing rather than guess
        # The token ids are kept too (int64, one per position), so they count against the bound.
        per_token = _TOKEN_BYTES + sum(
            k.element_size() * k[:, :, :1].numel() + v.element_size() * v[:, :, :1].numel() for k, v in layers
        )
        keep = min(length, self.max_bytes // per_token)
        if keep < 1:
            return
        if keep < length or not all(_compact(k) and _compact(v) for k, v in layers):
            # Larger than the whole bound (the leading part is the part that is shared), or a view
            # into a larger buffer that keeping the view would hold alive whole: keep exact copies.
            layers = [(k[:, :, :keep].clone(), v[:, :, :keep].clone()) for k, v in layers]
        tokens = sequence[:keep].detach().to("cpu", torch.long).clone()
        entry = _Entry(tokens=tokens, layers=tuple(layers), nbytes=held_bytes(tokens, layers))
        with self._lock:
            for key, old in list(self._entries.items()):
                shared = _common_prefix(old.tokens, tokens, len(tokens))
                if shared == len(old.tokens):  # the new entry covers the old one: it adds nothing
                    self._drop(key)
                elif shared == len(tokens):  # an old entry already covers this one
                    self._entries.move_to_end(key)
                    return
            while self._entries and (
                self._bytes + entry.nbytes > self.max_bytes or len(self._entries) >= self.max_entries
            ):
                self._drop(next(iter(self._entries)))
            self._entries[self._next_key] = entry
            self._next_key += 1
            self._bytes += entry.nbytes

    def _drop(self, key: int) -> None:
        self._bytes -= self._entries.pop(key).nbytes


def held_bytes(tokens: torch.Tensor, layers: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> int:
    """The bytes an entry keeps alive: every storage it references, counted once and in full.

    Counted from the storages rather than from shapes, so that what the bound limits is the
    memory the entry really holds (a view keeps its whole buffer alive).
    """
    storages: dict[int, int] = {}
    for tensor in (tokens, *(t for pair in layers for t in pair)):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def _compact(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is all of its storage, so keeping it keeps nothing more."""
    return tensor.untyped_storage().nbytes() == tensor.element_size() * tensor.numel()


def _common_prefix(stored: torch.Tensor, prompt: torch.Tensor, limit: int) -> int:
    """How many leading tokens ``stored`` and ``prompt`` share, at most ``limit``."""
    length = min(len(stored), len(prompt), limit)
    if length <= 0:
        return 0
    differs = torch.nonzero(stored[:length] != prompt[:length])
    return int(differs[0, 0]) if len(differs) else length
