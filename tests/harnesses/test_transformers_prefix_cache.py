"""The transformers harness's prefix cache: reuse is reported, output unchanged, memory bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
import torch

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.errors import BadRequest
from cortex_kernel.harness import HarnessContext, Usage
from cortex_kernel.openai_wire import ChatRequest, CompletionRequest
from cortex_transformers.prefix_cache import PrefixCache, PrefixCacheStats

if TYPE_CHECKING:
    from cortex_transformers.harness import TransformersHarness

pytestmark = pytest.mark.slow

Pair = tuple["TransformersHarness", "TransformersHarness"]

SYSTEM = "You are a careful coding agent. " + " ".join(
    f"Rule {i}: keep tool output short." for i in range(40)
)


def profile(source: str | Path, model_id: str, **options: Any) -> ModelProfile:
    return ModelProfile(
        id=model_id, harness="transformers", source=str(source), min_devices=0, options=options
    )


def chat(model: str, messages: list[dict[str, Any]], **fields: Any) -> ChatRequest:
    return ChatRequest(model=model, messages=messages, temperature=0, max_tokens=12, **fields)


async def run(harness: TransformersHarness, model: str, request: ChatRequest) -> tuple[str, Usage]:
    deltas = [d async for d in harness.chat(model, request)]
    text = "".join(d.text + d.reasoning for d in deltas)
    usage = deltas[-1].usage
    assert usage is not None
    return text, usage


def stats_of(harness: TransformersHarness, model: str) -> PrefixCacheStats:
    stats = harness.prefix_cache_stats(model)
    assert stats is not None
    return stats


@pytest.fixture
async def pair(
    make_harness: Callable[[HarnessContext], TransformersHarness],
    harness_context: HarnessContext,
    tiny_chat_model: Path,
) -> Pair:
    """One harness with the prefix cache (model ``c``) and one without (model ``p``), same weights."""
    cached = make_harness(harness_context)
    await cached.load(profile(tiny_chat_model, "c"))
    plain = make_harness(
        HarnessContext(
            model_roots=harness_context.model_roots,
            cache_dir=harness_context.cache_dir,
            options={"prefix_cache_mb": 0},
        )
    )
    await plain.load(profile(tiny_chat_model, "p"))
    assert cached.prefix_cache_stats("c") is not None and plain.prefix_cache_stats("p") is None
    return cached, plain


async def same_as_plain(pair: Pair, messages: list[dict[str, Any]]) -> tuple[str, Usage]:
    """Run ``messages`` on both harnesses; the text must match; return the cached harness's usage."""
    cached, plain = pair
    text, usage = await run(cached, "c", chat("c", messages))
    expected, plain_usage = await run(plain, "p", chat("p", messages))
    assert text == expected
    assert plain_usage.cached_tokens == 0 and usage.prompt_tokens == plain_usage.prompt_tokens
    return text, usage


async def prompt_ids(harness: TransformersHarness, model: str, messages: list[dict[str, Any]]) -> list[int]:
    entry = harness._entry(model)
    return (await asyncio.to_thread(harness._render, entry, chat(model, messages))).ids


async def test_a_shared_prefix_is_reported_cached_and_output_is_unchanged(pair: Pair) -> None:
    cached, _ = pair
    first = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "List the files."}]
    reply, usage = await same_as_plain(pair, first)
    assert usage.cached_tokens == 0  # nothing seen yet
    # The next turn resends the history Claude-Code-style: everything before is a shared prefix.
    second = [*first, {"role": "assistant", "content": reply}, {"role": "user", "content": "Now the tests."}]
    _, usage = await same_as_plain(pair, second)
    shared = common_prefix(await prompt_ids(cached, "c", first), await prompt_ids(cached, "c", second))
    assert usage.cached_tokens >= shared > 100
    assert usage.cached_tokens < usage.prompt_tokens


@pytest.mark.parametrize("cut", [0.1, 0.25, 0.5, 0.9])
async def test_prefixes_of_several_lengths(pair: Pair, cut: float) -> None:
    """The second prompt leaves the first part-way through its user turn; reuse stops exactly
    where the tokens part (or one short of the whole prompt)."""
    cached, _ = pair
    words = SYSTEM.split()
    first = [{"role": "user", "content": SYSTEM}]
    head = " ".join(words[: int(len(words) * cut)])
    second = [{"role": "user", "content": head + " Then something else entirely, please."}]
    await same_as_plain(pair, first)
    _, usage = await same_as_plain(pair, second)
    shared = common_prefix(await prompt_ids(cached, "c", first), await prompt_ids(cached, "c", second))
    assert usage.cached_tokens == min(shared, usage.prompt_tokens - 1) > 0


async def test_a_prompt_that_ends_inside_a_template_sequence(pair: Pair) -> None:
    """The first prompt ends with the template's multi-token assistant header (``<|im_start|>``,
    ``as``, ``s``, ...); the second opens a user turn there, so the two part after the header's
    first token: the cached run ends mid-way through the template's own sequence."""
    cached, _ = pair
    first = [{"role": "user", "content": SYSTEM}]
    ids = await prompt_ids(cached, "c", first)
    second = [{"role": "user", "content": SYSTEM}, {"role": "user", "content": "And more."}]
    other = await prompt_ids(cached, "c", second)
    shared = common_prefix(ids, other)
    header = cached.handles("c").tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids[shared - 1] == header and len(ids) - shared > 2  # inside the header, not at its edge
    await same_as_plain(pair, first)
    _, usage = await same_as_plain(pair, second)
    assert usage.cached_tokens == shared


async def test_the_same_prompt_twice_reuses_all_but_its_last_token(pair: Pair) -> None:
    messages = [{"role": "user", "content": SYSTEM}]
    await same_as_plain(pair, messages)
    _, again = await same_as_plain(pair, messages)
    assert again.cached_tokens == again.prompt_tokens - 1


async def test_completions_reuse_too(pair: Pair) -> None:
    cached, plain = pair
    for model, harness in (("c", cached), ("p", plain)):
        outputs = []
        for suffix in ("", " and a tail"):
            request = CompletionRequest(model=model, prompt=SYSTEM + suffix, temperature=0, max_tokens=8)
            deltas = [d async for d in harness.complete(model, request)]
            usage = deltas[-1].usage
            assert usage is not None
            outputs.append(("".join(d.text for d in deltas), usage.cached_tokens))
        if model == "c":
            assert outputs[1][1] > 100
            reused = outputs
        else:
            assert [o[0] for o in outputs] == [o[0] for o in reused]


async def test_concurrent_requests_on_one_entry_do_not_disturb_each_other(pair: Pair) -> None:
    cached, plain = pair
    base = [{"role": "user", "content": SYSTEM}]
    await run(cached, "c", chat("c", base))
    turns = [
        [*base, {"role": "assistant", "content": "ok"}, {"role": "user", "content": f"Step {i}."}]
        for i in range(4)
    ]
    got = await asyncio.gather(*(run(cached, "c", chat("c", t)) for t in turns))
    for (text, usage), turn in zip(got, turns, strict=True):
        assert usage.cached_tokens > 100
        assert text == (await run(plain, "p", chat("p", turn)))[0]


async def test_memory_stays_under_the_bound_for_a_stream_of_distinct_prefixes(
    make_harness: Callable[[HarnessContext], TransformersHarness],
    harness_context: HarnessContext,
    tiny_chat_model: Path,
) -> None:
    harness = make_harness(harness_context)
    await harness.load(profile(tiny_chat_model, "b", prefix_cache_mb=0.25))  # 256 KiB: ~500 tokens here
    bound = 256 * 1024
    for i in range(12):
        content = f"Session {i}: " + " ".join(f"word{i}x{j}" for j in range(60 + 10 * i))
        await run(harness, "b", chat("b", [{"role": "user", "content": content}]))
        stats = stats_of(harness, "b")
        assert stats.bytes <= bound and stats.max_bytes == bound
        assert stats.entries >= 1
        assert held(harness, "b") == stats.bytes  # the bound limits the memory really held
    assert stats.entries < 12  # older sequences were evicted
    # The most recent sequence is still there and is reused.
    _, usage = await run(harness, "b", chat("b", [{"role": "user", "content": content + " more"}]))
    assert usage.cached_tokens > 0


async def test_a_sequence_over_the_whole_bound_keeps_its_leading_part(
    make_harness: Callable[[HarnessContext], TransformersHarness],
    harness_context: HarnessContext,
    tiny_chat_model: Path,
) -> None:
    harness = make_harness(harness_context)
    await harness.load(profile(tiny_chat_model, "s", prefix_cache_mb=0.05))  # ~100 tokens of KV
    messages = [{"role": "user", "content": SYSTEM}]
    _, first = await run(harness, "s", chat("s", messages))
    stats = stats_of(harness, "s")
    assert 0 < stats.bytes <= 0.05 * 2**20
    _, usage = await run(harness, "s", chat("s", messages))
    assert 0 < usage.cached_tokens < first.prompt_tokens - 1


async def test_sleep_and_unload_drop_the_cache(loaded: TransformersHarness) -> None:
    messages = [{"role": "user", "content": SYSTEM}]
    await run(loaded, "tiny-chat", chat("tiny-chat", messages))
    assert stats_of(loaded, "tiny-chat").entries == 1
    assert stats_of(loaded, "tiny-chat").bytes > 0
    await loaded.sleep("tiny-chat")
    assert stats_of(loaded, "tiny-chat").entries == 0
    await loaded.wake("tiny-chat")
    _, usage = await run(loaded, "tiny-chat", chat("tiny-chat", messages))
    assert usage.cached_tokens == 0


async def test_the_reported_bytes_are_the_storage_the_entries_hold(
    make_harness: Callable[[HarnessContext], TransformersHarness],
    harness_context: HarnessContext,
    tiny_chat_model: Path,
) -> None:
    """Every tensor an entry keeps (the token ids too) counts against the bound, so the bytes the
    cache reports are the bytes it holds: a soak grew the neurons faster than the count said."""
    harness = make_harness(harness_context)
    await harness.load(profile(tiny_chat_model, "r"))
    for i in range(5):
        content = f"Question {i}: " + SYSTEM[: 40 * i]
        await run(harness, "r", chat("r", [{"role": "user", "content": content}]))
    stats = stats_of(harness, "r")
    assert stats.entries == 5
    assert stats.bytes == held(harness, "r")


def test_a_view_into_a_larger_buffer_is_kept_as_an_exact_copy() -> None:
    """A cache whose tensors are views of a larger buffer would keep the whole buffer alive while
    counting only the view: the cache keeps exact copies, and counts what it keeps."""
    cache = PrefixCache(model_config=None, max_bytes=2**20)
    buffers = [torch.zeros(1, 2, 100, 16) for _ in range(4)]
    layers = [
        SimpleNamespace(keys=buffers[0][:, :, :10], values=buffers[1][:, :, :10]),
        SimpleNamespace(keys=buffers[2][:, :, :10], values=buffers[3][:, :, :10]),
    ]
    cache.store(torch.arange(11), SimpleNamespace(layers=layers))
    (entry,) = cache._entries.values()
    kept = [entry.tokens, *(t for pair in entry.layers for t in pair)]
    assert all(t.untyped_storage().nbytes() == t.numel() * t.element_size() for t in kept)
    assert cache.stats().bytes == sum(t.numel() * t.element_size() for t in kept) == 10 * 8 + 4 * 10 * 32 * 4


@pytest.mark.parametrize("value", [-1, "big", True])
async def test_a_bad_bound_is_refused(
    harness: TransformersHarness, tiny_chat_model: Path, value: object
) -> None:
    with pytest.raises(BadRequest, match="prefix_cache_mb"):
        await harness.load(profile(tiny_chat_model, "x", prefix_cache_mb=value))


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def held(harness: TransformersHarness, model: str) -> int:
    """The bytes of every storage the model's prefix cache references, each counted once."""
    storages: dict[int, int] = {}
    prefix_cache = harness._entry(model).prefix_cache
    assert prefix_cache is not None
    for entry in prefix_cache._entries.values():
        for tensor in (entry.tokens, *(t for pair in entry.layers for t in pair)):
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
    return sum(storages.values())


def test_the_entry_count_is_bounded_whatever_the_byte_bound_allows() -> None:
    """A lookup scans every entry, so tiny entries under a large byte bound must not pile up:
    past ``max_entries`` the least recently used one goes."""

    def filled(length: int) -> SimpleNamespace:
        kv = torch.zeros(1, 1, length, 2)
        return SimpleNamespace(layers=[SimpleNamespace(keys=kv.clone(), values=kv.clone())])

    cache = PrefixCache(model_config=None, max_bytes=2**30, max_entries=4)
    for first in range(6):  # six sequences that share no prefix
        cache.store(torch.tensor([100 + first, 1, 2, 3]), filled(4))
        assert cache.stats().entries == min(first + 1, 4)
    stats = cache.stats()
    assert stats.bytes < stats.max_bytes  # the count bound, not the byte bound, evicted
    held_firsts = sorted(int(entry.tokens[0]) for entry in cache._entries.values())
    assert held_firsts == [102, 103, 104, 105]  # the two oldest went
