"""``ScriptedAsyncLLM``: a stand-in for vLLM's ``AsyncLLM`` that needs no GPU.

It is real wherever the harness looks: vLLM's ``ModelConfig`` and renderer (tokenizer, chat
template) built from the tiny synthetic checkpoint, real ``RequestOutput`` /
``CompletionOutput`` objects in ``DELTA`` form, ``SchedulerStats`` handed to the stat loggers
it was built with. Only the engine core is scripted: it "generates" the tokens of a reply text,
a few at a time, and honours ``max_tokens``, aborts, sleep and shutdown.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from vllm.config import DeviceConfig, VllmConfig
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.outputs import CompletionOutput, RequestOutput
from vllm.renderers import renderer_from_config
from vllm.sampling_params import RequestOutputKind, SamplingParams
from vllm.v1.metrics.stats import PrefixCacheStats, SchedulerStats

GIB = 1024**3


@functools.cache
def frontend_parts(model: str, max_model_len: int | None) -> tuple[Any, Any]:
    """vLLM's model config and renderer for a local checkpoint, on the CPU (cached: immutable)."""
    args = AsyncEngineArgs(model=model, max_model_len=max_model_len)
    model_config = args.create_model_config()
    config = VllmConfig(model_config=model_config, device_config=DeviceConfig(device="cpu"))
    return model_config, renderer_from_config(config)


class FakeProbe:
    """GPU memory and UUIDs as NVML would report them, moved by the scripted engines."""

    def __init__(self, devices: int = 2, used: int = GIB) -> None:
        self.used = dict.fromkeys(range(devices), used)

    def used_bytes(self, devices: list[int]) -> dict[int, int] | None:
        return {device: self.used[device] for device in devices}

    def uuids(self, devices: list[int]) -> list[str] | None:
        return [f"GPU-fake-{device}" for device in devices]


@dataclass
class Script:
    """What the scripted engines do; shared by every engine one factory builds."""

    reply: str = "hello world " * 400
    tokens_per_step: int = 2
    step_s: float = 0.0
    cached_tokens: int = 0
    finish_reason: str | None = None  # force one (e.g. "error"); else stop / length as vLLM would
    holds: int = 2 * GIB  # device memory an awake engine holds
    asleep_holds: int = GIB // 4
    leak_on_shutdown: bool = False
    start_s: float = 0.0
    start_error: Exception | None = None


@dataclass
class ScriptedAsyncLLM:
    """The ``AsyncLLM`` members the harness uses, over a scripted engine core."""

    args: AsyncEngineArgs
    stat_loggers: list[Any]
    script: Script
    probe: FakeProbe | None = None
    model_config: Any = None
    renderer: Any = None
    loggers: list[Any] = field(default_factory=list)
    generated: list[tuple[str, dict[str, Any], SamplingParams, dict[str, Any]]] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    errored: bool = False
    sleeping: bool = False
    shut_down: bool = False
    _active: dict[str, asyncio.Event] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.model_config, self.renderer = frontend_parts(str(self.args.model), self.args.max_model_len)
        self.loggers = [factory(None, 0) for factory in self.stat_loggers]
        self._move(self.script.holds)

    @property
    def devices(self) -> list[int]:
        ids = self.args.device_ids or [0]
        return [int(str(device).removeprefix("GPU-fake-")) for device in ids]

    def _move(self, amount: int) -> None:
        if self.probe is not None:
            for device in self.devices:
                self.probe.used[device] += amount

    def get_tokenizer(self) -> Any:
        return self.renderer.get_tokenizer()

    def get_num_unfinished_requests(self) -> int:
        return len(self._active)

    async def generate(
        self, prompt: dict[str, Any], sampling_params: SamplingParams, request_id: str, **kwargs: Any
    ) -> AsyncGenerator[RequestOutput]:
        assert sampling_params.output_kind == RequestOutputKind.DELTA
        assert not self.sleeping and not self.shut_down, "a request reached a sleeping or stopped engine"
        self.generated.append((request_id, prompt, sampling_params, kwargs))
        aborted = self._active.setdefault(request_id, asyncio.Event())
        tokenizer = self.get_tokenizer()
        reply = list(tokenizer.encode(self.script.reply, add_special_tokens=False))
        limit = sampling_params.max_tokens or len(reply)
        tokens = reply[:limit]
        reason = self.script.finish_reason or ("length" if len(reply) > limit else "stop")
        try:
            sent = 0
            while True:
                await asyncio.sleep(self.script.step_s)
                if aborted.is_set():
                    yield self._output(request_id, prompt, [], "", "abort")
                    return
                chunk = tokens[sent : sent + self.script.tokens_per_step]
                text = tokenizer.decode(tokens[: sent + len(chunk)]) if chunk else ""
                text = text[len(tokenizer.decode(tokens[:sent])) :] if sent else text
                sent += len(chunk)
                done = sent >= len(tokens)
                self._record_stats()
                yield self._output(request_id, prompt, chunk, text, reason if done else None)
                if done:
                    return
        except (GeneratorExit, asyncio.CancelledError):
            await self.abort(request_id, internal=True)
            raise
        finally:
            self._active.pop(request_id, None)

    def _output(
        self, request_id: str, prompt: dict[str, Any], token_ids: list[int], text: str, reason: str | None
    ) -> RequestOutput:
        completion = CompletionOutput(
            index=0,
            text=text,
            token_ids=token_ids,
            cumulative_logprob=None,
            logprobs=None,
            finish_reason=reason,
        )
        return RequestOutput(
            request_id=request_id,
            prompt=None,
            prompt_token_ids=list(prompt["prompt_token_ids"]),
            prompt_logprobs=None,
            outputs=[completion],
            finished=reason is not None,
            num_cached_tokens=self.script.cached_tokens,
        )

    def _record_stats(self) -> None:
        stats = SchedulerStats(
            num_running_reqs=len(self._active),
            num_waiting_reqs=0,
            kv_cache_usage=0.25,
            prefix_cache_stats=PrefixCacheStats(requests=1, queries=10, hits=4),
        )
        for logger in self.loggers:
            logger.record(scheduler_stats=stats, iteration_stats=None)

    async def abort(self, request_id: str | list[str], internal: bool = False) -> None:
        for one in [request_id] if isinstance(request_id, str) else request_id:
            self.aborted.append(one)
            if one in self._active:
                self._active[one].set()

    async def sleep(self, level: int = 1, mode: str = "abort") -> None:
        self.calls.append(f"sleep({level})")
        for event in self._active.values():
            event.set()
        await asyncio.sleep(0.01)
        self.sleeping = True
        self._move(self.script.asleep_holds - self.script.holds)

    async def wake_up(self, tags: list[str] | None = None) -> bool:
        self.calls.append(f"wake_up({tags})")
        if self.sleeping and tags == ["weights"]:
            return False
        if self.sleeping:
            self.sleeping = False
            self._move(self.script.holds - self.script.asleep_holds)
        return True

    def shutdown(self, timeout: float | None = None) -> None:
        if self.shut_down:
            return
        self.shut_down = True
        self.calls.append("shutdown")
        if not self.script.leak_on_shutdown:
            self._move(-(self.script.asleep_holds if self.sleeping else self.script.holds))


@dataclass
class ScriptedFactory:
    """An ``engine_factory`` for :class:`cortex_vllm.harness.VllmHarness` that builds scripted engines."""

    script: Script = field(default_factory=Script)
    probe: FakeProbe | None = None
    engines: list[ScriptedAsyncLLM] = field(default_factory=list)
    starts: list[tuple[str, float, float]] = field(default_factory=list)  # (model id, began, ended)
    on_start: Callable[[AsyncEngineArgs], None] | None = None

    def __call__(self, args: AsyncEngineArgs, stat_loggers: list[Any]) -> ScriptedAsyncLLM:
        import time

        began = time.monotonic()
        if self.on_start is not None:
            self.on_start(args)
        if self.script.start_s:
            time.sleep(self.script.start_s)
        if self.script.start_error is not None:
            raise self.script.start_error
        engine = ScriptedAsyncLLM(args=args, stat_loggers=stat_loggers, script=self.script, probe=self.probe)
        self.engines.append(engine)
        served = args.served_model_name
        name = served[0] if isinstance(served, list) else str(served)
        self.starts.append((name, began, time.monotonic()))
        return engine

    @property
    def last(self) -> ScriptedAsyncLLM:
        return self.engines[-1]
