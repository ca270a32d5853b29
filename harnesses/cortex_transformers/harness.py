"""The transformers harness: Hugging Face models on CPU or one CUDA device, in the neuron process.

It is the harness for CPU-only hosts, laptops and the test suite, so it favours being exact and
predictable over throughput: one sequence per ``generate`` call (no batching across requests),
the checkpoint's own tokenizer and chat template, exact token counts, and streaming that stops
within one decode step when the client goes away. See ``docs/harnesses.md`` for its options.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.errors import BadRequest, Conflict, CortexError, NotFound
from cortex_kernel.harness import (
    ContextLengthExceeded,
    Delta,
    Embeddings,
    HarnessContext,
    ModelDescription,
    PromptTooLarge,
    Usage,
    check_prompt_size,
)
from cortex_kernel.openai_wire import ChatRequest, CompletionRequest, check_chat_request
from cortex_transformers.detokenizer import decoder_for
from cortex_transformers.embedding import Pooling, embed_texts, read_pooling
from cortex_transformers.footprint import checkpoint_bytes
from cortex_transformers.generation import (
    CANCEL_WAIT_S,
    Channel,
    Finished,
    GenerationJob,
    GenerationPlan,
    base_generation_config,
    stream_generation,
)
from cortex_transformers.offload import HostCopy, offload, restore
from cortex_transformers.options import check_options
from cortex_transformers.parsing import DEFAULT_MARKERS, OutputParser, prompt_opens_reasoning
from cortex_transformers.prefix_cache import PrefixCache, PrefixCacheStats
from cortex_transformers.process_state import PROCESS_STATE_LOCK
from cortex_transformers.prompt_bound import max_prompt_bytes
from cortex_transformers.prompts import render_chat
from cortex_transformers.sampling import SamplingParams, model_sampling_defaults, resolve_sampling
from cortex_transformers.sources import hub_offline, hub_snapshot, resolve_source

log = logging.getLogger(__name__)

# Output budget when neither the request, the options nor the context length bound it.
_UNBOUNDED_MAX_TOKENS = 4096
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_SWITCHES = ("auto", "on", "off")
# The prefix cache's bound per chat model when neither the profile nor the harness table sets one.
_DEFAULT_PREFIX_CACHE_MB = 512


@dataclass(frozen=True)
class ModelHandles:
    """The torch objects behind a loaded model, for benchmarks and white-box tests."""

    model: Any
    tokenizer: Any
    device: torch.device


@dataclass
class _Loaded:
    """Everything the harness keeps per loaded model."""

    profile: ModelProfile
    model: Any
    tokenizer: Any
    device: torch.device
    devices: list[int]
    context_length: int | None
    decode: Callable[[Sequence[int]], str]
    capabilities: list[str] = field(default_factory=list)
    eos_token_ids: tuple[int, ...] = ()
    generation_config: Any = None
    sampling_defaults: dict[str, Any] = field(default_factory=dict)
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    default_max_tokens: int | None = None
    max_prompt_bytes: int | None = None
    reasoning: bool = False
    tools: bool = False
    pooling: Pooling | None = None
    embed_batch_size: int = 32
    jobs: set[GenerationJob] = field(default_factory=set)
    sleeping: bool = False
    host_copy: HostCopy | None = None
    prefix_cache: PrefixCache | None = None


@dataclass(frozen=True)
class _Prompt:
    text: str
    ids: list[int]
    with_tools: bool


class TransformersHarness:
    """Implements :class:`cortex_kernel.harness.Harness` on Hugging Face transformers + torch.

    Harness options (``[harnesses.transformers]`` in ``neuron.toml``) and profile options
    (``options`` of a ``[[models]]`` entry, which win) are listed in ``docs/harnesses.md``.
    """

    name = "transformers"
    supports_sleep = True

    def __init__(self, context: HarnessContext) -> None:
        # Progress bars on a daemon's stderr are noise in its journal; logs say what loaded.
        import huggingface_hub.utils
        from transformers.utils import logging as transformers_logging

        huggingface_hub.utils.disable_progress_bars()  # type: ignore[attr-defined]
        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        self._context = context
        self._models: dict[str, _Loaded] = {}
        self._load_locks: dict[str, asyncio.Lock] = {}
        workers = _int_option(context.options, "max_concurrency", 4)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cortex-transformers")

    # -- lifecycle ------------------------------------------------------------------------------

    async def load(self, profile: ModelProfile) -> ModelDescription:
        lock = self._load_locks.setdefault(profile.id, asyncio.Lock())
        async with lock:
            if profile.id not in self._models:
                self._models[profile.id] = await asyncio.to_thread(self._load_sync, profile)
        return self.describe(profile.id)

    async def unload(self, model_id: str) -> None:
        """Free the model; a model that is not loaded (a failed or cancelled load) is a no-op."""
        entry = self._models.pop(model_id, None)
        if entry is None:
            return
        await self._stop_jobs(entry, NotFound(f"model {model_id!r} was unloaded", code="model_not_found"))
        if entry.prefix_cache is not None:
            entry.prefix_cache.clear()
        device = entry.device
        entry.model = entry.tokenizer = entry.generation_config = None
        await asyncio.to_thread(_free_memory, device)

    async def sleep(self, model_id: str) -> None:
        """Move the weights out of the model into a host-RAM copy (``offload``), freeing the
        device; requests are refused meanwhile."""
        entry = self._entry(model_id)
        if entry.sleeping:
            return
        entry.sleeping = True
        await self._stop_jobs(entry, Conflict(f"model {model_id!r} went to sleep", code="model_sleeping"))
        if entry.prefix_cache is not None:
            entry.prefix_cache.clear()  # asleep, a model holds no memory beyond its weights
        entry.host_copy = await asyncio.to_thread(offload, entry.model)
        await asyncio.to_thread(_free_memory, entry.device)

    async def wake(self, model_id: str) -> None:
        """Put the host-RAM copy back on the model's device."""
        entry = self._entry(model_id)
        if not entry.sleeping:
            return
        if entry.host_copy is not None:
            await asyncio.to_thread(restore, entry.model, entry.host_copy, entry.device)
            entry.host_copy = None
        entry.sleeping = False

    def resident_bytes(self, model_id: str) -> tuple[int, int]:
        """Bytes of ``model_id``'s weights held in the model itself and in its host-RAM copy
        (what a test reads to see that sleep moved them out of the working set)."""
        entry = self._entry(model_id)
        live = sum(
            t.numel() * t.element_size()
            for t in itertools.chain(entry.model.parameters(), entry.model.buffers())
            if t.device.type != "meta"
        )
        # Tied tensors appear under each of their names but are kept once.
        unique = {t.data_ptr(): t.numel() * t.element_size() for _, t in (entry.host_copy or {}).values()}
        kept = sum(unique.values())
        return live, kept

    def estimate_bytes(self, profile: ModelProfile) -> int | None:
        """Memory ``profile`` will take once loaded, from its checkpoint's files, or ``None``.

        Cheap enough to run before every load (headers only; a synthetic model is built, as the
        load would do next). ``None`` when it cannot tell: a hub model not yet downloaded, or a
        source the load itself will reject with the right error.
        """
        try:
            source = resolve_source(
                profile.weights_source,
                model_roots=self._context.model_roots,
                cache_dir=self._context.cache_dir,
            )
            device, _ = self._device_for(profile)
            dtype = self._dtype_for(profile, device)
            directory = source.path or self._hub_snapshot(profile, str(source.hub_id))
            if directory is None:
                return None
            float_bytes = dtype.itemsize if isinstance(dtype, torch.dtype) else None
            return checkpoint_bytes(directory, float_bytes)
        except (CortexError, OSError, ValueError, KeyError, TypeError) as exc:
            log.debug("cannot estimate the size of %s: %s", profile.id, exc)
            return None

    def _hub_snapshot(self, profile: ModelProfile, hub_id: str) -> Path | None:
        """The local copy of a hub model, if it was downloaded before (never downloads)."""
        cache, revision = self._hub_place(profile)
        try:
            return hub_snapshot(hub_id, hub_cache=cache, revision=revision, offline=True)
        except NotFound:
            return None

    def describe(self, model_id: str) -> ModelDescription:
        entry = self._entry(model_id)
        tensors = itertools.chain(entry.model.parameters(), entry.model.buffers())
        memory = sum(t.numel() * t.element_size() for t in tensors)
        return ModelDescription(
            context_length=entry.context_length,
            max_prompt_bytes=entry.max_prompt_bytes,
            memory_bytes=memory,
            devices=[] if entry.sleeping else list(entry.devices),
            task=entry.profile.task,
            capabilities=list(entry.capabilities),
        )

    def handles(self, model_id: str) -> ModelHandles:
        """The loaded torch model and tokenizer (benchmarks compare against plain ``generate``)."""
        entry = self._entry(model_id)
        return ModelHandles(model=entry.model, tokenizer=entry.tokenizer, device=entry.device)

    def close(self) -> None:
        """Stop the worker threads (not part of the protocol; for embedders and tests)."""
        for entry in self._models.values():
            for job in list(entry.jobs):
                job.cancel()
        self._models.clear()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def prefix_cache_stats(self, model_id: str) -> PrefixCacheStats | None:
        """What ``model_id``'s prefix cache holds and has saved; ``None`` when it has none."""
        cache = self._entry(model_id).prefix_cache
        return cache.stats() if cache is not None else None

    def in_flight(self, model_id: str) -> int:
        """Generations currently holding ``model_id`` (running or queued for a worker)."""
        return len(self._entry(model_id).jobs)

    # -- generation -----------------------------------------------------------------------------

    async def chat(self, model_id: str, request: ChatRequest) -> AsyncIterator[Delta]:
        entry = self._ready(model_id, "chat")
        check_chat_request(request)
        prompt = await asyncio.to_thread(self._render, entry, request)
        plan = self._plan(
            entry,
            prompt.ids,
            request.output_limit,
            request.stop_sequences,
            resolve_sampling(
                temperature=request.temperature,
                top_p=request.top_p,
                top_k=request.top_k,
                min_p=request.min_p,
                seed=request.seed,
                repetition_penalty=request.repetition_penalty,
                presence_penalty=request.presence_penalty,
                frequency_penalty=request.frequency_penalty,
                model_defaults=entry.sampling_defaults,
            ),
            request.ignore_eos,
        )
        parser = OutputParser(
            reasoning=entry.reasoning,
            tools=prompt.with_tools and entry.tools,
            in_reasoning=entry.reasoning and prompt_opens_reasoning(prompt.text, DEFAULT_MARKERS),
        )
        async with contextlib.aclosing(self._stream(entry, plan, parser)) as deltas:
            async for delta in deltas:
                yield delta

    async def complete(self, model_id: str, request: CompletionRequest) -> AsyncIterator[Delta]:
        entry = self._ready(model_id, "chat")
        check_chat_request(request)
        if isinstance(request.prompt, list):
            if len(request.prompt) != 1:
                raise BadRequest(
                    "only one prompt per request is supported", code="invalid_value", param="prompt"
                )
            text = request.prompt[0]
        else:
            text = request.prompt
        ids = await asyncio.to_thread(self._encode_raw, entry, text)
        sampling = resolve_sampling(
            temperature=request.temperature,
            top_p=request.top_p,
            top_k=request.top_k,
            seed=request.seed,
            model_defaults=entry.sampling_defaults,
        )
        try:
            plan = self._plan(
                entry, ids, request.max_tokens, request.stop_sequences, sampling, request.ignore_eos
            )
        except ContextLengthExceeded as exc:
            exc.param = "prompt"
            raise
        if request.echo and text:
            yield Delta(text=text)
        async with contextlib.aclosing(self._stream(entry, plan, None)) as deltas:
            async for delta in deltas:
                yield delta

    async def count_tokens(self, model_id: str, request: ChatRequest) -> int:
        entry = self._entry(model_id)
        self._check_task(entry, "chat")
        prompt = await asyncio.to_thread(self._render, entry, request)
        return len(prompt.ids)

    async def embed(self, model_id: str, inputs: list[str], *, normalize: bool) -> Embeddings:
        entry = self._ready(model_id, "embedding")
        if not inputs:
            raise BadRequest("'input' must not be empty", code="invalid_value", param="input")
        assert entry.pooling is not None
        if entry.context_length is not None:
            for index, text in enumerate(inputs):
                try:
                    check_prompt_size(text, entry.max_prompt_bytes, entry.context_length)
                except PromptTooLarge as exc:
                    exc.param = f"input[{index}]" if len(inputs) > 1 else "input"
                    raise
        # Bound now: an unload while this waits for a worker must not pull the model away.
        model, tokenizer, pooling = entry.model, entry.tokenizer, entry.pooling
        loop = asyncio.get_running_loop()
        vectors, tokens = await loop.run_in_executor(
            self._executor,
            lambda: embed_texts(
                model,
                tokenizer,
                list(inputs),
                pooling=pooling,
                normalize=normalize,
                max_tokens=entry.context_length,
                batch_size=entry.embed_batch_size,
            ),
        )
        return Embeddings(vectors=vectors, prompt_tokens=tokens)

    async def _stream(
        self, entry: _Loaded, plan: GenerationPlan, parser: OutputParser | None
    ) -> AsyncGenerator[Delta]:
        def start(channel: Channel) -> GenerationJob:
            # Re-checked here, after the awaits above: the model may have gone away meanwhile.
            if self._ready(entry.profile.id, "chat") is not entry:
                raise NotFound(f"model {entry.profile.id!r} was reloaded", code="model_not_found")
            return GenerationJob(
                entry.model,
                entry.decode,
                plan,
                entry.generation_config,
                entry.eos_token_ids,
                channel,
                entry.prefix_cache,
            )

        pieces = stream_generation(start, self._executor, entry.jobs)
        async with contextlib.aclosing(pieces):
            async for piece in pieces:
                if isinstance(piece, Finished):
                    for delta in parser.finish() if parser is not None else []:
                        yield delta
                    reason: Literal["stop", "length", "tool_calls"] = piece.reason
                    if reason == "stop" and parser is not None and parser.tool_calls:
                        reason = "tool_calls"
                    usage = Usage(
                        prompt_tokens=len(plan.prompt_ids),
                        completion_tokens=piece.completion_tokens,
                        cached_tokens=piece.cached_tokens,
                    )
                    yield Delta(finish_reason=reason, usage=usage)
                    return
                if parser is None:
                    yield Delta(text=piece)
                else:
                    for delta in parser.feed(piece):
                        yield delta

    def _plan(
        self,
        entry: _Loaded,
        prompt_ids: list[int],
        requested: int | None,
        stop: list[str],
        sampling: SamplingParams,
        ignore_eos: bool = False,
    ) -> GenerationPlan:
        """Bound the output: the prompt must leave room for one token, and output never overruns.

        A prompt that fills the context is an error (:class:`ContextLengthExceeded`); a requested
        ``max_tokens`` larger than the room left is clamped to it and ends with ``length``, since
        clients routinely ask for more than a small local model's context. Without a requested
        limit, the profile's ``default_max_tokens``, else the checkpoint's ``max_new_tokens``, else
        the room left applies.
        """
        limit = entry.context_length
        if limit is not None and len(prompt_ids) >= limit:
            raise ContextLengthExceeded(len(prompt_ids), limit)
        room = limit - len(prompt_ids) if limit is not None else None
        wanted = requested or entry.default_max_tokens or room or _UNBOUNDED_MAX_TOKENS
        max_new = min(wanted, room) if room is not None else wanted
        return GenerationPlan(
            prompt_ids=prompt_ids,
            max_new_tokens=max_new,
            sampling=sampling,
            stop=tuple(stop),
            ignore_eos=ignore_eos,
        )

    def _render(self, entry: _Loaded, request: ChatRequest) -> _Prompt:
        with_tools = bool(request.tools) and request.tool_choice != "none"
        text = render_chat(
            entry.tokenizer, request, with_tools=with_tools, default_kwargs=entry.template_kwargs
        )
        if entry.context_length is not None:
            check_prompt_size(text, entry.max_prompt_bytes, entry.context_length)
        ids = list(entry.tokenizer.encode(text, add_special_tokens=False))
        return _Prompt(text=text, ids=ids, with_tools=with_tools)

    @staticmethod
    def _encode_raw(entry: _Loaded, text: str) -> list[int]:
        if entry.context_length is not None:
            try:
                check_prompt_size(text, entry.max_prompt_bytes, entry.context_length)
            except PromptTooLarge as exc:
                exc.param = "prompt"
                raise
        ids = list(entry.tokenizer.encode(text, add_special_tokens=True))
        if not ids:
            raise BadRequest("'prompt' must not be empty", code="invalid_value", param="prompt")
        return ids

    # -- lookup ---------------------------------------------------------------------------------

    def _entry(self, model_id: str) -> _Loaded:
        entry = self._models.get(model_id)
        if entry is None:
            raise NotFound(f"model {model_id!r} is not loaded", code="model_not_found", param="model")
        return entry

    @staticmethod
    def _check_task(entry: _Loaded, task: Literal["chat", "embedding"]) -> None:
        if entry.profile.task == task:
            return
        if task == "chat":
            raise BadRequest(
                f"model {entry.profile.id!r} is an embedding model; use /v1/embeddings",
                code="model_not_chat",
                param="model",
            )
        raise BadRequest(
            f"model {entry.profile.id!r} is a chat model and cannot embed; use an embedding model",
            code="model_not_embedding",
            param="model",
        )

    def _ready(self, model_id: str, task: Literal["chat", "embedding"]) -> _Loaded:
        entry = self._entry(model_id)
        self._check_task(entry, task)
        if entry.sleeping:
            raise Conflict(f"model {model_id!r} is asleep; wake it first", code="model_sleeping")
        return entry

    async def _stop_jobs(self, entry: _Loaded, error: CortexError) -> None:
        jobs = list(entry.jobs)
        for job in jobs:
            job.cancel(error)
        if jobs:
            await asyncio.to_thread(_wait_for_jobs, jobs, CANCEL_WAIT_S)

    # -- loading --------------------------------------------------------------------------------

    def _option(self, profile: ModelProfile, key: str, default: Any) -> Any:
        """A profile option, else the harness option, else ``default``."""
        if key in profile.options:
            return profile.options[key]
        return self._context.options.get(key, default)

    def _load_sync(self, profile: ModelProfile) -> _Loaded:
        check_options(self._context.options, profile.options)
        location = self._weights_directory(profile)
        device, devices = self._device_for(profile)
        common: dict[str, Any] = {"trust_remote_code": profile.trust_remote_code}
        model_kwargs: dict[str, Any] = {"dtype": self._dtype_for(profile, device)}
        attn = self._option(profile, "attn_implementation", None)
        if attn is not None:
            model_kwargs["attn_implementation"] = str(attn)
        try:
            from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(location, **common)
            model_class = AutoModel if profile.task == "embedding" else AutoModelForCausalLM
            with PROCESS_STATE_LOCK:  # from_pretrained patches globals: one at a time per process
                model: Any = model_class.from_pretrained(location, **model_kwargs, **common)
            model.to(device)
            model.eval()
        except OSError as exc:  # missing files, a hub id not cached while offline, an unknown repo
            raise NotFound(
                f"cannot load model {profile.id!r} from {profile.weights_source!r}: {exc}",
                code="model_not_found",
            ) from exc
        except ValueError as exc:  # e.g. remote code needed but not trusted, unsupported architecture
            raise BadRequest(f"cannot load model {profile.id!r}: {exc}", code="unsupported_model") from exc
        except torch.OutOfMemoryError as exc:
            raise CortexError(f"out of memory loading model {profile.id!r}", code="out_of_memory") from exc
        except Exception as exc:  # remote code and exotic checkpoints fail in any way they like
            raise CortexError(
                f"cannot load model {profile.id!r}: {type(exc).__name__}: {exc}", code="load_failed"
            ) from exc
        context_length = profile.context_length or _model_context_length(model, tokenizer)
        entry = _Loaded(
            profile=profile,
            model=model,
            tokenizer=tokenizer,
            device=device,
            devices=devices,
            context_length=context_length,
            decode=decoder_for(tokenizer),
            default_max_tokens=_positive_int_option(self._option(profile, "default_max_tokens", None)),
        )
        if profile.task == "embedding":
            entry.pooling = read_pooling(location, override=self._option(profile, "pooling", None))
            entry.embed_batch_size = _positive_int_option(self._option(profile, "embed_batch_size", 32)) or 32
            entry.capabilities = ["embeddings"]
            entry.max_prompt_bytes = max_prompt_bytes(tokenizer, context_length)
            return entry
        self._configure_chat(entry)
        return entry

    def _configure_chat(self, entry: _Loaded) -> None:
        profile, tokenizer, model = entry.profile, entry.tokenizer, entry.model
        eos: list[int] = []
        configured = getattr(model.generation_config, "eos_token_id", None)
        for token in configured if isinstance(configured, list) else [configured]:
            if isinstance(token, int) and token not in eos:
                eos.append(token)
        if isinstance(tokenizer.eos_token_id, int) and tokenizer.eos_token_id not in eos:
            eos.append(tokenizer.eos_token_id)
        entry.eos_token_ids = tuple(eos)
        entry.generation_config = base_generation_config(model, eos)
        entry.sampling_defaults = model_sampling_defaults(model.generation_config)
        checkpoint_limit = getattr(model.generation_config, "max_new_tokens", None)
        if entry.default_max_tokens is None and isinstance(checkpoint_limit, int) and checkpoint_limit > 0:
            entry.default_max_tokens = checkpoint_limit
        kwargs = self._option(profile, "chat_template_kwargs", {})
        if not isinstance(kwargs, dict):
            raise BadRequest("option 'chat_template_kwargs' must be a table", code="invalid_option")
        entry.template_kwargs = dict(kwargs)
        vocab = tokenizer.get_vocab()
        template = str(getattr(tokenizer, "chat_template", None) or "")
        markers = DEFAULT_MARKERS
        entry.reasoning = _switch(
            self._option(profile, "reasoning", "auto"),
            "reasoning",
            markers.think_start in vocab or markers.think_start in template,
        )
        entry.tools = _switch(
            self._option(profile, "tool_calls", "auto"),
            "tool_calls",
            markers.tool_start in vocab or markers.tool_start in template,
        )
        entry.max_prompt_bytes = max_prompt_bytes(tokenizer, entry.context_length)
        bound_mb = self._option(profile, "prefix_cache_mb", _DEFAULT_PREFIX_CACHE_MB)
        if not isinstance(bound_mb, int | float) or isinstance(bound_mb, bool) or bound_mb < 0:
            raise BadRequest("option 'prefix_cache_mb' must be a number >= 0", code="invalid_option")
        entry.prefix_cache = PrefixCache.for_model(model, entry.generation_config, int(bound_mb * 2**20))
        entry.capabilities = ["chat", "completions"]
        if entry.tools:
            entry.capabilities.append("tools")
        if entry.reasoning:
            entry.capabilities.append("reasoning")

    def _device_for(self, profile: ModelProfile) -> tuple[torch.device, list[int]]:
        """CPU, or the first of the profile's CUDA devices (one device per model in this harness)."""
        choice = str(self._option(profile, "device", "auto"))
        if choice not in ("auto", "cpu", "cuda"):
            raise BadRequest(
                f"option 'device' must be auto, cpu or cuda, not {choice!r}", code="invalid_option"
            )
        if choice == "cpu":
            return torch.device("cpu"), []
        cuda = torch.cuda.is_available()
        if profile.devices:
            if not cuda:
                raise CortexError(
                    f"model {profile.id!r} asks for CUDA devices {profile.devices} but CUDA is not available",
                    status=503,
                    code="device_unavailable",
                )
            if len(profile.devices) > 1:
                log.warning(
                    "model %s: the transformers harness uses one device, cuda:%d",
                    profile.id,
                    profile.devices[0],
                )
            return torch.device("cuda", profile.devices[0]), [profile.devices[0]]
        if cuda and (choice == "cuda" or profile.min_devices > 0):
            return torch.device("cuda", 0), [0]
        if choice == "cuda":
            raise CortexError(
                "option device = 'cuda' but CUDA is not available", status=503, code="device_unavailable"
            )
        return torch.device("cpu"), []

    def _dtype_for(self, profile: ModelProfile, device: torch.device) -> Any:
        """float32 on CPU (half precision is slow or unsupported there), the checkpoint's on CUDA."""
        name = str(self._option(profile, "dtype", "auto"))
        if name == "auto":
            return torch.float32 if device.type == "cpu" else "auto"
        if name not in _DTYPES:
            raise BadRequest(
                f"option 'dtype' must be auto or one of {', '.join(_DTYPES)}", code="invalid_option"
            )
        return _DTYPES[name]

    def _weights_directory(self, profile: ModelProfile) -> str:
        """The absolute directory to read ``profile``'s weights from (see :mod:`.sources`)."""
        source = resolve_source(
            profile.weights_source, model_roots=self._context.model_roots, cache_dir=self._context.cache_dir
        )
        if source.path is not None:
            return str(source.path)
        assert source.hub_id is not None
        cache, revision = self._hub_place(profile)
        offline = hub_offline() or bool(self._option(profile, "offline", False))
        return str(hub_snapshot(source.hub_id, hub_cache=cache, revision=revision, offline=offline))

    def _hub_place(self, profile: ModelProfile) -> tuple[Path, str | None]:
        """The hub cache and revision a profile's hub model is read from."""
        cache = self._option(profile, "hub_cache_dir", None)
        revision = self._option(profile, "revision", None)
        return (
            Path(str(cache)).expanduser() if cache is not None else self._context.cache_dir / "hub",
            str(revision) if revision is not None else None,
        )


def _model_context_length(model: Any, tokenizer: Any) -> int | None:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    length = getattr(config, "max_position_embeddings", None)
    if isinstance(length, int) and length > 0:
        return length
    length = getattr(tokenizer, "model_max_length", None)
    return length if isinstance(length, int) and 0 < length < 10**8 else None


def _switch(value: Any, name: str, detected: bool) -> bool:
    if value is True or value is False:
        return value
    if value not in _SWITCHES:
        raise BadRequest(f"option {name!r} must be one of {', '.join(_SWITCHES)}", code="invalid_option")
    return detected if value == "auto" else value == "on"


def _int_option(options: dict[str, Any], key: str, default: int) -> int:
    value = options.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest(f"option {key!r} must be a positive integer", code="invalid_option")
    return value


def _positive_int_option(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest(f"option value {value!r} must be a positive integer", code="invalid_option")
    return value


def _wait_for_jobs(jobs: list[GenerationJob], timeout: float) -> None:
    for job in jobs:
        job.done.wait(timeout)


def _free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
