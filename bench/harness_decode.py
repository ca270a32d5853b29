"""Decode throughput of the transformers harness against a plain ``model.generate`` call.

Both sides run the same loaded model object, the same prompt (rendered by the model's chat
template) and the same greedy (or seeded sampling) settings, in interleaved rounds so that
machine noise hits both alike. The figure of merit is the ratio of median tokens/s
(harness / plain); the harness streams, detokenizes and parses every token, and the target is
a ratio of at least 0.9 (reported both as the ratio of medians and as the median of the
per-round ratios, which is steadier on a shared machine).

    .venv/bin/python bench/harness_decode.py                        # 4-layer, 256-wide synthetic
    .venv/bin/python bench/harness_decode.py --model synthetic:tiny-chat --tokens 128
    .venv/bin/python bench/harness_decode.py --model /models/Qwen3-0.6B --device cuda

A local ``--model`` directory is used in place (its parent becomes the model root).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.harness import HarnessContext
from cortex_kernel.openai_wire import ChatRequest
from cortex_transformers.harness import TransformersHarness

MODEL_ID = "bench"
PROMPT = "Write a long story about the weather in Paris and London."


def plain_generate(model: Any, prompt_ids: list[int], tokens: int, temperature: float, seed: int) -> int:
    """The baseline: one ``generate`` call, nothing streamed. Returns the tokens generated.

    ``model`` is a transformers model: its ``generate`` is typed through a torch decorator that
    mypy reads as a tensor, not a function.
    """
    input_ids = torch.tensor([prompt_ids], device=model.device)
    # Neutral values in greedy mode keep the checkpoint's sampling defaults from being merged in.
    sampling = {"temperature": temperature or 1.0, "top_p": 1.0, "top_k": 0 if temperature else 50}
    if temperature:
        torch.manual_seed(seed)
    output = model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=tokens,
        do_sample=bool(temperature),
        **sampling,
    )
    return int(output.shape[1] - input_ids.shape[1])


async def harness_generate(harness: TransformersHarness, request: ChatRequest) -> int:
    usage = None
    async for delta in harness.chat(MODEL_ID, request):
        usage = delta.usage or usage
    assert usage is not None
    return usage.completion_tokens


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        source, roots = args.source, args.roots
        context = HarnessContext(
            model_roots=roots, cache_dir=Path(scratch) / "cache", options={"device": args.device}
        )
        harness = TransformersHarness(context)
        profile = ModelProfile(id=MODEL_ID, harness="transformers", source=source, min_devices=0)
        description = await harness.load(profile)
        handles = harness.handles(MODEL_ID)
        request = ChatRequest(
            model=MODEL_ID,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=args.tokens,
            temperature=args.temperature,
            top_p=1.0,  # the same plain softmax sampling as the baseline, not the checkpoint's
            top_k=0,
            seed=args.seed,
        )
        prompt_ids = handles.tokenizer.encode(
            handles.tokenizer.apply_chat_template(
                request.messages, add_generation_prompt=True, tokenize=False
            ),
            add_special_tokens=False,
        )
        config = handles.model.config
        print(
            f"model {args.model}: {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
            f"{(description.memory_bytes or 0) / 2**20:.1f} MiB on {handles.device}; torch threads "
            f"{torch.get_num_threads()}; prompt {len(prompt_ids)} tokens, {args.tokens} new, "
            f"temperature {args.temperature}"
        )

        def run_plain() -> float:
            started = time.perf_counter()
            produced = plain_generate(handles.model, prompt_ids, args.tokens, args.temperature, args.seed)
            return produced / (time.perf_counter() - started)

        async def run_harness() -> float:
            started = time.perf_counter()
            produced = await harness_generate(harness, request)
            return produced / (time.perf_counter() - started)

        run_plain()  # warm-up: allocator, kernels, tokenizer caches
        await run_harness()
        plain: list[float] = []
        ours: list[float] = []
        for round_ in range(args.rounds):
            if round_ % 2:  # alternate the order so neither side always runs second
                ours.append(await run_harness())
                plain.append(run_plain())
            else:
                plain.append(run_plain())
                ours.append(await run_harness())
        harness.close()

    plain_median, ours_median = statistics.median(plain), statistics.median(ours)
    # Each round's two runs are back to back, so their ratio cancels slow drifts in machine load.
    paired = statistics.median(o / p for o, p in zip(ours, plain, strict=True))
    print(f"plain generate : median {plain_median:8.1f} tok/s  ({', '.join(f'{x:.0f}' for x in plain)})")
    print(f"harness stream : median {ours_median:8.1f} tok/s  ({', '.join(f'{x:.0f}' for x in ours)})")
    print(f"ratio harness/plain: {ours_median / plain_median:.3f} of medians, {paired:.3f} median of pairs")
    print("target: >= 0.9")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="synthetic:small-chat", help="synthetic:NAME or a model directory")
    parser.add_argument("--tokens", type=int, default=256, help="new tokens per run")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per side")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 for greedy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    args.source, args.roots = args.model, ()
    if not args.model.startswith("synthetic:"):
        path = Path(args.model).resolve()
        args.source, args.roots = str(path), (path.parent,)
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
