"""The vLLM harness: one ``AsyncLLM`` per loaded model, embedded in the neuron process.

vLLM's V1 ``AsyncLLM`` always runs its engine core (scheduler, model workers, GPU memory) in
child processes; the neuron process keeps only the frontend: tokenizer, chat template, output
parsers and the asyncio plumbing that streams outputs back. So the harness never touches CUDA
itself (GPU facts come from NVML, see :mod:`cortex_vllm.devices`), unloading a model is
shutting its engine down, and the memory comes back when the engine-core processes exit,
which the harness confirms through NVML.

Lifecycle, per model: ``load`` starts the engine (blocking work, in a thread, holding the
model's GPUs so that engines sharing a GPU start one at a time); ``sleep``/``wake`` use vLLM's
sleep mode level 1 (weights to host memory, KV cache dropped) so a swapped-out model returns
in seconds; ``unload`` aborts what is in flight, shuts the engine down and waits for NVML to
show the memory released. See ``docs/harnesses.md`` for the options.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vllm.engine.arg_utils import AsyncEngineArgs

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.errors import BadRequest, Conflict, CortexError, NotFound, Overloaded
from cortex_kernel.harness import Delta, Embeddings, HarnessContext, ModelDescription
from cortex_kernel.openai_wire import ChatRequest, CompletionRequest, check_chat_request
from cortex_transformers.sources import hub_offline, hub_snapshot, resolve_source
from cortex_vllm.devices import MIB, DeviceLocks, MemoryProbe, NvmlProbe, held_bytes, wait_released
from cortex_vllm.engine_args import EnginePlan, plan_engine
from cortex_vllm.errors import translate
from cortex_vllm.frontend import Frontend, Prepared
from cortex_vllm.options import VllmOptions, read_options
from cortex_vllm.stats import EngineGauges, gauge_logger_factory
from cortex_vllm.stream import EngineAborted

log = logging.getLogger(__name__)

EngineFactory = Callable[[AsyncEngineArgs, list[Any]], Any]


def start_engine(args: AsyncEngineArgs, stat_loggers: list[Any]) -> Any:
    """Build one ``AsyncLLM``: blocks while the engine core loads weights and sizes its KV cache.

    The configuration is built first and on its own, so that arguments vLLM rejects are a 400
    naming the problem, distinct from an engine that failed while starting.
    """
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.async_llm import AsyncLLM

    try:
        config = args.create_engine_config(UsageContext.ENGINE_CONTEXT)
    except OSError as exc:  # missing files, a hub id not cached while offline
        raise NotFound(f"cannot read model {args.model!r}: {exc}", code="model_not_found") from exc
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"vLLM refused the engine arguments: {exc}", code="invalid_engine_args") from exc
    return AsyncLLM.from_vllm_config(config, stat_loggers=stat_loggers, disable_log_stats=True)


def cuda_initialized_here() -> bool:
    """Whether this process has initialised CUDA (asked without initialising it)."""
    torch = sys.modules.get("torch")
    return torch is not None and bool(torch.cuda.is_initialized())


@dataclass
class _Model:
    """Everything the harness keeps per loaded model."""

    profile: ModelProfile
    options: VllmOptions
    engine: Any
    frontend: Frontend
    devices: list[int]
    gauges: EngineGauges
    awake_bytes: dict[int, int] | None
    held: dict[int, int] = field(default_factory=dict)
    sleeping: bool = False
    in_flight: set[str] = field(default_factory=set)
    # Why in-flight requests are being aborted (sleep, unload); their streams raise it.
    stopping: CortexError | None = None


class VllmHarness:
    """Implements :class:`cortex_kernel.harness.Harness` on vLLM's ``AsyncLLM``.

    :param engine_factory: builds an engine from its arguments and stat loggers (blocking);
        tests pass a scripted double.
    :param probe: reads GPU memory and UUIDs; NVML by default.
    """

    name = "vllm"
    supports_sleep = True

    def __init__(
        self,
        context: HarnessContext,
        *,
        engine_factory: EngineFactory = start_engine,
        probe: MemoryProbe | None = None,
    ) -> None:
        read_options(context.options, {})  # a bad [harnesses.vllm] table fails the first load
        # Profiles name GPUs by NVML index; make CUDA in the engine processes count the same way.
        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        self._context = context
        self._engine_factory = engine_factory
        self._probe: MemoryProbe = probe or NvmlProbe()
        self._locks = DeviceLocks()
        self._models: dict[str, _Model] = {}
        self._load_locks: dict[str, asyncio.Lock] = {}

    # -- lifecycle ------------------------------------------------------------------------------

    async def load(self, profile: ModelProfile) -> ModelDescription:
        lock = self._load_locks.setdefault(profile.id, asyncio.Lock())
        async with lock:
            if profile.id not in self._models:
                self._models[profile.id] = await self._start(profile)
        return self.describe(profile.id)

    async def unload(self, model_id: str) -> None:
        """Abort in-flight requests, shut the engine down, and confirm the GPU memory came back.

        :raises CortexError: (``memory_not_released``) NVML still shows the memory held after
            ``unload_timeout_s``; the model is gone from the harness all the same.
        """
        model = self._models.pop(model_id, None)
        if model is None:
            return
        model.stopping = NotFound(f"model {model_id!r} was unloaded", code="model_not_found")
        await self._abort(model, list(model.in_flight))
        async with self._locks.hold(model.devices):
            before = await self._used(model.devices)
            await asyncio.to_thread(model.engine.shutdown)
            missing = await wait_released(self._probe, before, model.held, model.options.unload_timeout_s)
        if missing:
            detail = ", ".join(f"GPU {device}: {size // MIB} MiB" for device, size in sorted(missing.items()))
            raise CortexError(
                f"model {model_id!r} is unloaded, but NVML shows its GPU memory still held after "
                f"{model.options.unload_timeout_s:g}s ({detail})",
                code="memory_not_released",
            )

    async def sleep(self, model_id: str) -> None:
        """vLLM sleep level 1: weights to host memory, KV cache dropped; in-flight requests abort."""
        model = self._entry(model_id)
        if model.sleeping:
            return
        if not model.options.sleep_mode:
            raise BadRequest(
                f"model {model_id!r} was loaded with sleep_mode = false", code="sleep_not_supported"
            )
        model.sleeping = True
        model.stopping = Conflict(f"model {model_id!r} went to sleep", code="model_sleeping")
        before = await self._used(model.devices)
        try:
            await model.engine.sleep(level=1)
        except Exception as exc:
            model.sleeping, model.stopping = False, None
            raise translate(exc, model_id) from exc
        freed = held_bytes(await self._used(model.devices), before)
        model.held = {device: max(0, size - freed.get(device, 0)) for device, size in model.held.items()}

    async def wake(self, model_id: str) -> None:
        """Wake in two steps, weights then KV cache, so the two never need room at once."""
        model = self._entry(model_id)
        if not model.sleeping:
            return
        async with self._locks.hold(model.devices):
            try:
                await model.engine.wake_up(["weights"])
                if not await model.engine.wake_up(["kv_cache"]):
                    await model.engine.wake_up(None)
            except Exception as exc:
                raise translate(exc, model_id) from exc
        model.sleeping, model.stopping = False, None
        model.held = dict(model.awake_bytes or {})

    def describe(self, model_id: str) -> ModelDescription:
        model = self._entry(model_id)
        return ModelDescription(
            context_length=model.frontend.context_length,
            memory_bytes=sum(model.held.values()) if model.awake_bytes is not None else None,
            devices=[] if model.sleeping else list(model.devices),
            task="chat",
            capabilities=model.frontend.capabilities,
        )

    def engine_stats(self, model_id: str) -> dict[str, float]:
        """The engine's scheduler gauges, for routing: see :meth:`EngineGauges.snapshot`."""
        model = self._entry(model_id)
        unfinished = int(model.engine.get_num_unfinished_requests())
        return model.gauges.snapshot(unfinished=unfinished, sleeping=model.sleeping)

    def close(self) -> None:
        """Shut every engine down (not part of the protocol; for embedders and tests)."""
        models, self._models = list(self._models.values()), {}
        for model in models:
            model.engine.shutdown()

    # -- generation -----------------------------------------------------------------------------

    async def chat(self, model_id: str, request: ChatRequest) -> AsyncIterator[Delta]:
        model = self._ready(model_id)
        check_chat_request(request)
        prepared = await model.frontend.prepare_chat(request)
        async with contextlib.aclosing(self._generate(model, prepared)) as deltas:
            async for delta in deltas:
                yield delta

    async def complete(self, model_id: str, request: CompletionRequest) -> AsyncIterator[Delta]:
        model = self._ready(model_id)
        check_chat_request(request)
        prepared = await model.frontend.prepare_completion(request)
        if request.echo:
            prompt = request.prompt if isinstance(request.prompt, str) else request.prompt[0]
            if prompt:
                yield Delta(text=prompt)
        async with contextlib.aclosing(self._generate(model, prepared)) as deltas:
            async for delta in deltas:
                yield delta

    async def count_tokens(self, model_id: str, request: ChatRequest) -> int:
        """Rendered exactly as ``chat`` renders, so the count always equals its usage."""
        model = self._entry(model_id)
        _, _, token_ids = await model.frontend.render_chat(request)
        return len(token_ids)

    async def embed(self, model_id: str, inputs: list[str], *, normalize: bool) -> Embeddings:
        self._entry(model_id)
        raise BadRequest(
            f"model {model_id!r} is a chat model and cannot embed; use an embedding model",
            code="model_not_embedding",
            param="model",
        )

    async def _generate(self, model: _Model, prepared: Prepared) -> AsyncGenerator[Delta]:
        """Stream one request; closing the stream (a client that left) aborts it in the engine."""
        self._serving(model)  # again: the model may have gone to sleep while the prompt rendered
        adapter = prepared.adapter()
        request_id = f"cortex-{uuid.uuid4().hex}"
        settled = False  # the engine no longer holds the request
        model.in_flight.add(request_id)
        try:
            outputs = model.engine.generate(
                prepared.engine_input, prepared.params, request_id, **prepared.generate_kwargs
            )
            async with contextlib.aclosing(outputs):
                async for output in outputs:
                    settled = output.finished
                    for delta in adapter.feed(output):
                        yield delta
        except EngineAborted as exc:
            settled = True
            raise model.stopping or Overloaded(
                f"the engine of model {model.profile.id!r} aborted the request",
                code="request_aborted",
                retry_after=1,
            ) from exc
        except Exception as exc:
            settled = True  # vLLM's generate aborted the request itself before raising
            raise translate(exc, model.profile.id) from exc
        finally:
            model.in_flight.discard(request_id)
            if not settled:
                await self._abort(model, [request_id])

    # -- lookup ---------------------------------------------------------------------------------

    def _entry(self, model_id: str) -> _Model:
        model = self._models.get(model_id)
        if model is None:
            raise NotFound(f"model {model_id!r} is not loaded", code="model_not_found", param="model")
        return model

    def _ready(self, model_id: str) -> _Model:
        model = self._entry(model_id)
        self._serving(model)
        return model

    def _serving(self, model: _Model) -> None:
        if model.stopping is not None:
            raise model.stopping
        if model.engine.errored:
            raise CortexError(
                f"the vLLM engine of model {model.profile.id!r} died; unload and load the model again",
                status=503,
                code="engine_dead",
            )

    # -- helpers --------------------------------------------------------------------------------

    async def _start(self, profile: ModelProfile) -> _Model:
        if profile.task != "chat":
            raise BadRequest(
                f"the vllm harness serves chat models; load {profile.id!r} with the transformers harness",
                code="unsupported_task",
                param="task",
            )
        options = read_options(self._context.options, profile.options)
        plan = await asyncio.to_thread(self._plan, profile, options)
        gauges = EngineGauges()
        async with self._locks.hold(plan.devices):
            before = await self._used(plan.devices)
            engine = await self._start_engine(profile, plan, gauges)
            try:
                frontend = Frontend(engine, options)
                awake = held_bytes(before, await self._used(plan.devices)) if before is not None else None
            except BaseException:
                await asyncio.to_thread(engine.shutdown)
                raise
        if cuda_initialized_here():
            log.warning(
                "CUDA is initialised in the neuron process (by another harness or plugin); vLLM "
                "starts its engine cores with 'spawn' then, which is slower than 'fork'"
            )
        return _Model(
            profile=profile,
            options=options,
            engine=engine,
            frontend=frontend,
            devices=plan.devices,
            gauges=gauges,
            awake_bytes=awake,
            held=dict(awake or {}),
        )

    def _plan(self, profile: ModelProfile, options: VllmOptions) -> EnginePlan:
        source = resolve_source(
            profile.weights_source, model_roots=self._context.model_roots, cache_dir=self._context.cache_dir
        )
        model, download_dir = source.location, None
        if source.hub_id is not None:
            download_dir = options.hub_cache_dir or str(self._context.cache_dir / "hub")
            # vLLM gets the snapshot directory, not the id: it honours download_dir for the weights
            # only, reading the config, tokenizer and chat template through the default hub cache,
            # and offline it would look there alone, missing what the harness downloaded before.
            revision = options.engine_args.get("revision")
            snapshot = hub_snapshot(
                source.hub_id,
                hub_cache=Path(download_dir).expanduser(),
                revision=str(revision) if revision is not None else None,
                offline=hub_offline(),
            )
            model = str(snapshot)
        return plan_engine(profile, options, model=model, download_dir=download_dir, uuids=self._probe.uuids)

    async def _start_engine(self, profile: ModelProfile, plan: EnginePlan, gauges: EngineGauges) -> Any:
        """Start the engine in a thread; a load cancelled meanwhile still waits for it and shuts it down.

        The thread cannot be interrupted, and an engine nobody holds would keep its GPU memory
        until the neuron exits; the neuron's unload of a loading model awaits this cancellation,
        so it returns only once that memory is free.
        """
        loggers = [gauge_logger_factory(gauges)]
        starting = asyncio.ensure_future(asyncio.to_thread(self._engine_factory, plan.args, loggers))
        try:
            return await asyncio.shield(starting)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                engine = await starting
                await asyncio.to_thread(engine.shutdown)
            raise
        except CortexError:
            raise
        except Exception as exc:
            raise CortexError(
                f"vLLM could not start model {profile.id!r}: {type(exc).__name__}: {exc}", code="load_failed"
            ) from exc

    async def _used(self, devices: list[int]) -> dict[int, int] | None:
        if not devices:
            return None
        return await asyncio.to_thread(self._probe.used_bytes, devices)

    async def _abort(self, model: _Model, request_ids: list[str]) -> None:
        """Abort requests in the engine; the engine may already be gone, which is fine."""
        if not request_ids:
            return
        try:
            await model.engine.abort(request_ids)
        except Exception as exc:
            log.debug("aborting %s of %s: %s", request_ids, model.profile.id, exc)
