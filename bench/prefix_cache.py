"""Time to first token of an agent's next turn, with and without the transformers prefix cache.

A session resends its whole history each turn; with the prefix cache only the new tokens are
prefilled. Each round runs a fresh first turn (a long system prompt unique to the round, so the
cache holds nothing of it), then the next turn (history + a short new message) and times its
first token, on two harnesses over the same weights: one with ``prefix_cache_mb = 0``. Rounds
interleave so that machine noise hits both alike.

    .venv/bin/python bench/prefix_cache.py                          # 4-layer, 256-wide synthetic
    .venv/bin/python bench/prefix_cache.py --words 1000 --rounds 5
    .venv/bin/python bench/prefix_cache.py --model /models/Qwen3-0.6B --device cuda
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.harness import HarnessContext
from cortex_kernel.openai_wire import ChatRequest
from cortex_transformers.harness import TransformersHarness


async def turn(
    harness: TransformersHarness, model: str, messages: list[dict[str, str]]
) -> tuple[float, str, int]:
    """(seconds to the first text, the reply, cached tokens) of one greedy request."""
    request = ChatRequest(model=model, messages=messages, max_tokens=16, temperature=0)
    started = time.perf_counter()
    first = None
    text = ""
    cached = 0
    async for delta in harness.chat(model, request):
        if first is None and delta.text:
            first = time.perf_counter() - started
        text += delta.text
        if delta.usage is not None:
            cached = delta.usage.cached_tokens
    return (first if first is not None else time.perf_counter() - started), text, cached


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        roots = (Path(args.model).parent,) if not args.model.startswith("synthetic:") else ()
        harnesses = {}
        for name, bound in (("cached", args.prefix_cache_mb), ("plain", 0)):
            context = HarnessContext(
                model_roots=roots,
                cache_dir=Path(scratch) / "cache",
                options={"device": args.device, "prefix_cache_mb": bound},
            )
            harnesses[name] = TransformersHarness(context)
            profile = ModelProfile(id=name, harness="transformers", source=args.model, min_devices=0)
            await harnesses[name].load(profile)
        times: dict[str, list[float]] = {"cached": [], "plain": []}
        prompt_tokens = reused = 0
        for round_index in range(args.rounds):
            system = f"Session {round_index}. " + " ".join(f"w{round_index}x{i}" for i in range(args.words))
            for name, harness in harnesses.items():
                history = [{"role": "system", "content": system}, {"role": "user", "content": "Start."}]
                _, reply, _ = await turn(harness, name, history)
                history += [{"role": "assistant", "content": reply}, {"role": "user", "content": "Go on."}]
                seconds, _, cached = await turn(harness, name, history)
                times[name].append(seconds)
                if name == "cached":
                    reused = cached
                    prompt_tokens = await harness.count_tokens(
                        name, ChatRequest(model=name, messages=history)
                    )
        for harness in harnesses.values():
            harness.close()
    cached_s, plain_s = statistics.median(times["cached"]), statistics.median(times["plain"])
    print(f"model {args.model} on {args.device}; next turn of {prompt_tokens} prompt tokens, {reused} reused")
    print(
        f"TTFT median over {args.rounds} rounds: "
        f"cached {cached_s * 1000:.1f} ms, plain {plain_s * 1000:.1f} ms"
    )
    print(f"speed-up {plain_s / cached_s:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="synthetic:small-chat", help="synthetic:NAME or a model directory")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument(
        "--words", type=int, default=400, help="words in the system prompt (about 6 tokens each)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prefix-cache-mb", type=float, default=512)
    asyncio.run(main(parser.parse_args()))
