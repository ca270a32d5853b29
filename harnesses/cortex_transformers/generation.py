"""Running ``model.generate`` on a worker thread and streaming its text to the event loop.

``generate`` blocks for the whole reply, so it runs on the harness's thread pool. A
:class:`GenerationJob` rides inside it as a stopping criterion, which ``generate`` calls once per
new token with the ids so far: there it decodes the token, cuts the text at stop strings, hands
the text to the event loop, and answers "stop" when the client has gone away. One hook does all
of that, so a cancelled or finished request costs at most the decode step in progress.

Text crosses threads through :class:`Channel`, which wakes the event loop at most once per
batch: if the consumer is slower than the model, tokens coalesce instead of queueing wake-ups.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from cortex_kernel.errors import CortexError, Overloaded
from cortex_kernel.stop_sequences import StopMatcher
from cortex_transformers.detokenizer import IncrementalDetokenizer
from cortex_transformers.prefix_cache import PrefixCache
from cortex_transformers.sampling import SamplingParams, logits_processors

# How long closing a stream waits for its worker to notice. A decode step is milliseconds, but a
# prefill cannot be interrupted, so the wait is bounded rather than unconditional.
CANCEL_WAIT_S = 10.0

# Sampling fields of a checkpoint's generation config that the request-level processors replace.
# ``generate`` fills a field left at None from the checkpoint's config, so each is pinned to the
# value that ``GenerationConfig`` treats as "off" rather than cleared.
_NEUTRAL_SAMPLING = {
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 50,
    "typical_p": 1.0,
    "repetition_penalty": 1.0,
}


@dataclass(frozen=True)
class GenerationPlan:
    """Everything one generation needs, resolved before the worker starts."""

    prompt_ids: list[int]
    max_new_tokens: int
    sampling: SamplingParams
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False


@dataclass(frozen=True)
class Finished:
    """The end of a generation: why, how many tokens were generated (EOS included), how many
    prompt tokens came from the prefix cache."""

    reason: Literal["stop", "length"]
    completion_tokens: int
    stop: str | None = None
    cached_tokens: int = 0


def base_generation_config(model: Any, eos_token_ids: Sequence[int]) -> Any:
    """The checkpoint's generation config with its sampling switched off (ours replaces it)."""
    config = copy.deepcopy(model.generation_config)
    config.do_sample = False
    for name, value in _NEUTRAL_SAMPLING.items():
        setattr(config, name, value)
    config.num_beams = 1
    config.num_return_sequences = 1
    config.max_length = None
    config.stop_strings = None
    config.eos_token_id = list(eos_token_ids) or None
    if config.pad_token_id is None and eos_token_ids:
        config.pad_token_id = eos_token_ids[0]
    return config


class Channel:
    """Worker thread -> event loop hand-off that batches items between wake-ups."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._items: list[object] = []
        self._wakeup_pending = False
        self._event = asyncio.Event()

    def send(self, item: object) -> None:
        with self._lock:
            self._items.append(item)
            if self._wakeup_pending:
                return
            self._wakeup_pending = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self._loop.call_soon_threadsafe(self._event.set)

    async def receive(self) -> list[object]:
        while True:
            with self._lock:
                items, self._items = self._items, []
                self._wakeup_pending = False
            if items:
                return items
            self._event.clear()
            await self._event.wait()


class GenerationJob(StoppingCriteria):
    """One generation on a worker thread; also the stopping criterion ``generate`` consults."""

    def __init__(
        self,
        model: Any,
        decode: Callable[[Sequence[int]], str],
        plan: GenerationPlan,
        generation_config: Any,
        eos_token_ids: Sequence[int],
        channel: Channel,
        prefix_cache: PrefixCache | None = None,
    ) -> None:
        self._model = model
        self._prefix_cache = prefix_cache
        self.cached_tokens = 0
        self._plan = plan
        self._generation_config = copy.copy(generation_config)
        self._generation_config.max_new_tokens = plan.max_new_tokens
        # vLLM's ignore_eos: run to max_tokens (benchmarks, and tests that need a long stream).
        # EOS may still be sampled; it just does not end the generation. ``generate`` fills a
        # field left at None from the checkpoint's own config (and would stop on its EOS ids),
        # so "no EOS" is an empty list, which it keeps; padding is pinned for the same reason.
        self._eos = frozenset() if plan.ignore_eos else frozenset(eos_token_ids)
        if plan.ignore_eos:
            self._generation_config.eos_token_id = []
            if self._generation_config.pad_token_id is None:
                self._generation_config.pad_token_id = eos_token_ids[0] if eos_token_ids else 0
        self._channel = channel
        self._detokenizer = IncrementalDetokenizer(decode, plan.prompt_ids)
        self._stops = StopMatcher(plan.stop)
        self._cancelled = False
        self._error: CortexError | None = None
        self._reason: Literal["stop", "length"] = "length"
        self._stop_now: torch.Tensor | None = None
        self._go_on: torch.Tensor | None = None
        self.generated = 0
        self.steps_after_cancel = 0
        self.done = threading.Event()

    def cancel(self, error: CortexError | None = None) -> None:
        """Stop at the next token; ``error`` (if any) is what the stream's reader then gets."""
        if error is not None and self._error is None:
            self._error = error
        self._cancelled = True

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        assert self._stop_now is not None and self._go_on is not None
        if self._cancelled:
            self.steps_after_cancel += 1
            return self._stop_now  # type: ignore[return-value]
        token = int(input_ids[0, -1])
        self.generated += 1
        if token in self._eos:
            self._reason = "stop"
            return self._stop_now  # type: ignore[return-value]
        text = self._detokenizer.step(token)
        if text:
            visible = self._stops.push(text)
            if visible:
                self._channel.send(visible)
            if self._stops.matched is not None:
                self._reason = "stop"
                return self._stop_now  # type: ignore[return-value]
        if self.generated >= self._plan.max_new_tokens:
            self._reason = "length"
            return self._stop_now  # type: ignore[return-value]
        return self._go_on  # type: ignore[return-value]

    def run(self) -> None:
        """The worker-thread body: generate, flush, and report the end (or the error)."""
        try:
            if not self._cancelled:
                self._generate()
            if self._error is not None:
                self._channel.send(self._error)
            elif not self._cancelled:
                tail = self._stops.push(self._detokenizer.flush()) + self._stops.flush()
                if tail:
                    self._channel.send(tail)
                self._channel.send(
                    Finished(self._reason, self.generated, self._stops.matched, self.cached_tokens)
                )
        except torch.OutOfMemoryError as exc:
            self._channel.send(Overloaded(f"out of memory while generating: {exc}", retry_after=5))
        except CortexError as exc:
            self._channel.send(exc)
        except Exception as exc:
            error = CortexError(f"generation failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            self._channel.send(error)
        finally:
            self.done.set()

    def _generate(self) -> None:
        device = self._model.device
        input_ids = torch.tensor([self._plan.prompt_ids], dtype=torch.long, device=device)
        self._stop_now = torch.ones(1, dtype=torch.bool, device=device)
        self._go_on = torch.zeros(1, dtype=torch.bool, device=device)
        processors = logits_processors(self._plan.sampling, prompt_length=input_ids.shape[1], device=device)
        extra: dict[str, Any] = {}
        if self._prefix_cache is not None:
            # A fresh cache either way (never a stored one: generate grows it in place), holding
            # the longest prefix a recent sequence shares with this prompt.
            self.cached_tokens, cache = self._prefix_cache.lookup(self._plan.prompt_ids)
            extra[self._prefix_cache.keyword] = cache
        with torch.inference_mode():
            output = self._model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=self._generation_config,
                logits_processor=processors,
                stopping_criteria=StoppingCriteriaList([self]),
                **extra,
            )
        if self._prefix_cache is not None:
            sequences = getattr(output, "sequences", output)
            self._prefix_cache.store(sequences[0], cache)


async def stream_generation(
    job_factory: Callable[[Channel], GenerationJob],
    executor: Executor,
    registry: set[GenerationJob],
) -> AsyncGenerator[str | Finished]:
    """Run a job on ``executor`` and yield its text chunks, then one :class:`Finished`.

    Closing or cancelling this generator stops the job and waits (boundedly) until its worker
    has let go of the model, so the caller may rely on the work having stopped.
    """
    loop = asyncio.get_running_loop()
    channel = Channel(loop)
    job = job_factory(channel)
    registry.add(job)
    future = executor.submit(job.run)

    def let_go(_: object) -> None:
        # The job leaves the registry when its worker is done, not when this generator's cleanup
        # reaches its end: a second cancellation landing in the bounded wait below would skip
        # that, and the job (its prompt, its channel) would stay registered forever.
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody counts jobs now
            loop.call_soon_threadsafe(registry.discard, job)

    future.add_done_callback(let_go)
    try:
        while True:
            for item in await channel.receive():
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, str | Finished)
                yield item
                if isinstance(item, Finished):
                    return
    finally:
        job.cancel()
        if future.cancel():
            job.done.set()  # it never started, so it holds nothing
        else:
            await asyncio.wait({asyncio.wrap_future(future)}, timeout=CANCEL_WAIT_S)
