"""Check the vLLM harness against a real engine on this machine's NVIDIA GPU.

``scripts/gpu-check [MODEL]`` runs this module in the environment ``scripts/vllm-env`` prepares
(or ``python -m cortex_vllm.selfcheck`` wherever vLLM is installed). It runs the shared harness
conformance suite, then one load → stream → sleep → wake → stream → unload cycle, printing a
line per step with its time and what NVML shows on the GPU, and finally checks that this
process never initialised CUDA (the engine's processes do that, not the neuron's).

Without a MODEL it builds the tiny synthetic Llama chat checkpoint (random weights, a real
tokenizer and chat template) in a temporary directory, so the check needs no network. It exits
0 when every step passed, 1 when one failed, 2 without a GPU and 3 without vLLM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.errors import CortexError
from cortex_kernel.harness import HarnessContext
from cortex_kernel.openai_wire import ChatRequest
from cortex_vllm.devices import NvmlProbe, count_gpus
from cortex_vllm.plugin import check_vllm

GIB = 1024**3
MODEL_ID = "gpu-check"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gpu-check", description="Check the vLLM harness against a real engine on this GPU."
    )
    parser.add_argument(
        "model", nargs="?", help="a model directory or a cached hub id (default: a tiny synthetic Llama)"
    )
    parser.add_argument("--device", type=int, default=0, help="GPU index as NVML counts (default 0)")
    parser.add_argument("--context-length", type=int, default=8192, help="max_model_len (default 8192)")
    parser.add_argument("--kv-cache-gib", type=float, default=2.0, help="KV cache size in GiB (default 2)")
    parser.add_argument("--dtype", help="engine dtype (default: bfloat16 for the synthetic model, else auto)")
    parser.add_argument("--tool-parser", help="vLLM tool parser (default: hermes for the synthetic model)")
    parser.add_argument(
        "--reasoning-parser", help="vLLM reasoning parser (default: qwen3 for the synthetic model)"
    )
    parser.add_argument("--skip-conformance", action="store_true", help="run only the lifecycle cycle")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    gpus, why = count_gpus()
    if gpus == 0:
        print(f"gpu-check: no NVIDIA GPU here ({why}); run it on a GPU host", file=sys.stderr)
        return 2
    if args.device >= gpus:
        print(f"gpu-check: there is no GPU {args.device}; NVML sees {gpus}", file=sys.stderr)
        return 2
    try:
        installed = check_vllm()
    except CortexError as exc:
        print(f"gpu-check: {exc.message}", file=sys.stderr)
        return 3
    print(f"gpu-check: vLLM {installed}, GPU {args.device} of {gpus}")
    return asyncio.run(run(args))


def profile_for(args: argparse.Namespace, root: Path) -> tuple[ModelProfile, tuple[Path, ...]]:
    """The profile to check, and the model roots it needs; builds the synthetic model if asked."""
    options: dict[str, Any] = {"enforce_eager": True, "kv_cache_memory_bytes": int(args.kv_cache_gib * GIB)}
    tool_parser, reasoning_parser, dtype = args.tool_parser, args.reasoning_parser, args.dtype
    if args.model is None:
        from cortex_transformers.synthetic import build_tiny_chat_model

        # 4 heads of 64: attention kernels' most common head size; float32 weights run as bf16.
        source = str(build_tiny_chat_model(root / "tiny-chat", hidden_size=256, heads=4))
        roots: tuple[Path, ...] = (root,)
        tool_parser, reasoning_parser, dtype = (
            tool_parser or "hermes",
            reasoning_parser or "qwen3",
            dtype or "bfloat16",
        )
    elif Path(args.model).is_dir():
        source = str(Path(args.model).resolve())
        roots = (Path(source).parent,)
    else:  # a hub id: only from the local hub cache when the host is offline
        source = args.model
        roots = ()
        options["hub_cache_dir"] = os.environ.get("HF_HUB_CACHE") or str(
            Path.home() / ".cache/huggingface/hub"
        )
    for key, value in (
        ("tool_parser", tool_parser),
        ("reasoning_parser", reasoning_parser),
        ("dtype", dtype),
    ):
        if value:
            options[key] = value
    profile = ModelProfile(
        id=MODEL_ID,
        harness="vllm",
        source=source,
        devices=[args.device],
        context_length=args.context_length,
        options=options,
    )
    return profile, roots


class Steps:
    """Runs steps, printing one aligned line each; remembers failures."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.count = 0

    async def run(self, name: str, action: Callable[[], Awaitable[str]]) -> bool:
        self.count += 1
        started = time.monotonic()
        try:
            detail = await action()
        except Exception as exc:
            self.failed.append(name)
            print(f"  {name:<14} FAILED {time.monotonic() - started:6.1f}s  {type(exc).__name__}: {exc}")
            return False
        print(f"  {name:<14} ok     {time.monotonic() - started:6.1f}s  {detail}")
        return True


def gpu_memory(device: int) -> str:
    used = NvmlProbe().used_bytes([device])
    return "unknown" if used is None else f"{used[device] / GIB:.2f} GiB"


async def run(args: argparse.Namespace) -> int:
    from cortex_kernel.testing.conformance import ConformanceOptions, run_conformance
    from cortex_vllm.harness import VllmHarness, cuda_initialized_here

    steps = Steps()
    with tempfile.TemporaryDirectory(prefix="cortex-gpu-check-") as tmp:
        root = Path(tmp)
        profile, roots = profile_for(args, root)
        harness = VllmHarness(HarnessContext(model_roots=roots, cache_dir=root / "cache"))
        print(f"model: {profile.source}  options: {profile.options}")
        try:
            if not args.skip_conformance:
                print("conformance suite (cortex_kernel.testing.conformance):")
                report = await run_conformance(
                    harness, profile, options=ConformanceOptions(stop_timeout_s=5.0)
                )
                for line in report.summary().splitlines():
                    print(f"  {line}")
                steps.count += len(report.results)
                steps.failed += [result.name for result in report.failures]
            print(f"lifecycle on GPU {args.device} (NVML memory in use: {gpu_memory(args.device)}):")
            await lifecycle(harness, profile, args.device, steps)
        finally:
            harness.close()

    async def no_cuda() -> str:
        if cuda_initialized_here():
            raise AssertionError("this process initialised CUDA; only vLLM's engine processes may")
        return "this process never initialised CUDA; the engine core did, in its own process"

    await steps.run("cuda", no_cuda)
    if steps.failed:
        print(f"gpu-check: {len(steps.failed)} of {steps.count} checks failed: {', '.join(steps.failed)}")
        return 1
    print(f"gpu-check: all {steps.count} checks passed")
    return 0


async def lifecycle(harness: Any, profile: ModelProfile, device: int, steps: Steps) -> None:
    """load → stream → sleep → wake → stream → unload, each step timed."""
    request = ChatRequest(
        model=MODEL_ID,
        messages=[{"role": "user", "content": "Name three colours."}],
        max_tokens=32,
        temperature=0.0,
    )

    async def load() -> str:
        described = await harness.load(profile)
        memory = "unknown" if described.memory_bytes is None else f"{described.memory_bytes / GIB:.2f} GiB"
        return f"context {described.context_length}, holds {memory}, GPU {gpu_memory(device)} in use"

    async def stream() -> str:
        deltas = [delta async for delta in harness.chat(MODEL_ID, request)]
        usage = deltas[-1].usage
        assert usage is not None and deltas[-1].finish_reason is not None
        return (
            f"{len(deltas)} deltas, finish {deltas[-1].finish_reason}, usage {usage.prompt_tokens}+"
            f"{usage.completion_tokens} tokens ({usage.cached_tokens} cached)"
        )

    async def change(action: Callable[[str], Awaitable[None]]) -> str:
        before = gpu_memory(device)
        await action(MODEL_ID)
        return f"GPU {device}: {before} -> {gpu_memory(device)} in use"

    if not await steps.run("load", load):
        return
    await steps.run("stream", stream)
    await steps.run("stream again", stream)  # the prompt now comes from the prefix cache
    if await steps.run("sleep", lambda: change(harness.sleep)):
        await steps.run("wake", lambda: change(harness.wake))
        await steps.run("stream", stream)
    await steps.run("unload", lambda: change(harness.unload))


if __name__ == "__main__":
    sys.exit(main())
