"""The harness conformance suite: the rules of :mod:`cortex_kernel.harness`, as executable checks.

Any harness, built-in or third-party, runs it against itself, in one of two ways:

* ``report = await run_conformance(harness, chat_profile, embedding_profile)`` runs every check
  (loading each profile once) and returns a :class:`ConformanceReport`; call
  ``report.raise_for_failures()`` to fail a test.
* Subclass :class:`HarnessConformanceTests` in a test module and provide the fixtures
  ``conformance_harness``, ``conformance_chat_profile`` and ``conformance_embedding_profile``
  (``None`` when the harness has no embedding model); each check becomes its own test, with a
  fresh load.

The checks use only the protocol, so they hold the neuron's assumptions, not one engine's habits:
a stream ends with exactly one ``finish_reason`` and exact usage, closing a stream stops the work,
``count_tokens`` agrees with the usage a generation reports, a prompt that cannot fit raises
:class:`~cortex_kernel.harness.ContextLengthExceeded`, missing models raise
:class:`~cortex_kernel.errors.NotFound`, and embeddings have one width and unit length when asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.errors import CortexError, NotFound
from cortex_kernel.harness import ContextLengthExceeded, Delta, Harness, ModelDescription
from cortex_kernel.openai_wire import ChatRequest, CompletionRequest

Status = Literal["passed", "failed", "skipped"]


class ConformanceError(AssertionError):
    """A harness broke a rule of the protocol. Raised explicitly, never by ``assert``, so that
    ``python -O`` cannot turn the suite into one that passes everything; an ``AssertionError``
    so that pytest reports it as a test failure."""


_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter"})


@dataclass(frozen=True)
class ConformanceOptions:
    """Knobs for models and machines of different speeds.

    :param max_tokens: output budget of the short requests.
    :param long_max_tokens: budget of the request that is closed early; it must take clearly
        longer than ``stop_timeout_s`` to finish if nothing stopped it.
    :param stop_timeout_s: how long closing or cancelling a stream may take, work included.
    :param context_probe_limit: the context-overflow check builds a prompt longer than the
        model's context; it is skipped for contexts larger than this many tokens.
    """

    max_tokens: int = 8
    long_max_tokens: int = 512
    stop_timeout_s: float = 2.0
    context_probe_limit: int = 65536
    prompt: str = "Say hello in three words."
    embedding_inputs: tuple[str, ...] = ("hello world", "a somewhat longer sentence to embed", "x")


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str = ""


@dataclass(frozen=True)
class ConformanceReport:
    """The outcome of :func:`run_conformance`, one :class:`CheckResult` per check."""

    results: tuple[CheckResult, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[CheckResult]:
        return [result for result in self.results if result.status == "failed"]

    def summary(self) -> str:
        """One line per check: status, name and detail."""
        return "\n".join(
            f"{result.status:7} {result.name}" + (f": {result.detail}" if result.detail else "")
            for result in self.results
        )

    def raise_for_failures(self) -> None:
        """Raise :class:`ConformanceError` listing every failed check (for use inside a test)."""
        if not self.ok:
            raise ConformanceError("harness conformance failed:\n" + self.summary())


class ConformanceSkip(Exception):
    """A check that does not apply to this model (for example, its context is unbounded)."""


@dataclass
class CheckSubject:
    """What a check runs against: a harness with ``profile`` loaded (``description`` from load)."""

    harness: Harness
    profile: ModelProfile
    options: ConformanceOptions
    description: ModelDescription | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def model_id(self) -> str:
        return self.profile.id

    def chat_request(
        self, *, max_tokens: int | None = None, content: str | None = None, model: str | None = None
    ) -> ChatRequest:
        return ChatRequest(
            model=model or self.model_id,
            messages=[{"role": "user", "content": content if content is not None else self.options.prompt}],
            max_tokens=max_tokens or self.options.max_tokens,
            temperature=0.0,
        )


async def _collect(stream: AsyncIterator[Delta]) -> list[Delta]:
    return [delta async for delta in stream]


def _check_stream(deltas: list[Delta], max_tokens: int) -> Delta:
    """The stream rules every generation obeys; returns the final delta."""
    if not deltas:
        raise ConformanceError("the stream produced no deltas")
    for delta in deltas:
        if not isinstance(delta, Delta):
            raise ConformanceError(f"the stream yielded {type(delta).__name__}, not Delta")
    finals = [index for index, delta in enumerate(deltas) if delta.finish_reason is not None]
    if len(finals) != 1:
        raise ConformanceError(f"expected exactly one delta with finish_reason, got {len(finals)}")
    if finals[0] != len(deltas) - 1:
        raise ConformanceError("the delta with finish_reason must be the last one")
    last = deltas[-1]
    if last.finish_reason not in _FINISH_REASONS:
        raise ConformanceError(f"unexpected finish_reason {last.finish_reason!r}")
    if last.usage is None:
        raise ConformanceError("the final delta must carry usage")
    if last.usage.prompt_tokens <= 0:
        raise ConformanceError("usage.prompt_tokens must be positive")
    if last.usage.completion_tokens <= 0:
        raise ConformanceError("usage.completion_tokens must be positive")
    if last.usage.completion_tokens > max_tokens:
        raise ConformanceError(
            f"usage.completion_tokens={last.usage.completion_tokens} exceeds max_tokens={max_tokens}"
        )
    for delta in deltas[:-1]:
        if delta.usage is not None:
            raise ConformanceError("only the final delta may carry usage")
    return last


async def _expect_not_found(action: Callable[[], Awaitable[Any]], what: str) -> None:
    try:
        await action()
    except NotFound:
        return
    except CortexError as exc:
        raise ConformanceError(f"{what} raised {type(exc).__name__} ({exc}), expected NotFound") from exc
    raise ConformanceError(f"{what} did not raise NotFound")


# -- checks on a chat model ----------------------------------------------------------------------


async def check_describe(subject: CheckSubject) -> None:
    """``load`` returned a description, and ``describe`` agrees with the profile."""
    loaded = subject.description
    if not isinstance(loaded, ModelDescription):
        raise ConformanceError("load() must return a ModelDescription")
    described = subject.harness.describe(subject.model_id)
    if not isinstance(described, ModelDescription):
        raise ConformanceError("describe() must return a ModelDescription")
    if described.task != subject.profile.task:
        raise ConformanceError(f"describe().task is {described.task!r}")
    if described.context_length is not None and described.context_length <= 0:
        raise ConformanceError("context_length must be positive when known")
    if described.memory_bytes is not None and described.memory_bytes < 0:
        raise ConformanceError("memory_bytes must not be negative")
    if described.max_prompt_bytes is not None:
        # Every token stands for at least one byte, so a smaller bound would refuse prompts that fit.
        if described.context_length is None:
            raise ConformanceError("max_prompt_bytes needs a context_length")
        if described.max_prompt_bytes < described.context_length:
            raise ConformanceError("max_prompt_bytes below context_length")


async def check_chat_stream(subject: CheckSubject) -> None:
    """A chat streams deltas that end with one finish_reason and exact, positive usage."""
    request = subject.chat_request()
    deltas = await _collect(subject.harness.chat(subject.model_id, request))
    _check_stream(deltas, subject.options.max_tokens)


async def check_complete_stream(subject: CheckSubject) -> None:
    """A raw completion obeys the same stream rules as a chat."""
    request = CompletionRequest(
        model=subject.model_id,
        prompt=subject.options.prompt,
        max_tokens=subject.options.max_tokens,
        temperature=0,
    )
    deltas = await _collect(subject.harness.complete(subject.model_id, request))
    _check_stream(deltas, subject.options.max_tokens)


async def check_count_tokens(subject: CheckSubject) -> None:
    """``count_tokens`` equals the ``prompt_tokens`` that the same chat request reports."""
    request = subject.chat_request()
    counted = await subject.harness.count_tokens(subject.model_id, request)
    deltas = await _collect(subject.harness.chat(subject.model_id, request))
    usage = deltas[-1].usage if deltas else None
    if usage is None:
        raise ConformanceError("the chat stream carried no usage")
    if counted != usage.prompt_tokens:
        raise ConformanceError(f"count_tokens={counted} but usage.prompt_tokens={usage.prompt_tokens}")


async def check_close_stops(subject: CheckSubject) -> None:
    """Closing a stream, or cancelling its consumer, stops the work within ``stop_timeout_s``."""
    timeout = subject.options.stop_timeout_s
    request = subject.chat_request(max_tokens=subject.options.long_max_tokens)
    stream = subject.harness.chat(subject.model_id, request)
    if not hasattr(stream, "aclose"):
        raise ConformanceError("chat() must return an async generator (it needs aclose)")
    first = await stream.__anext__()
    started = time.monotonic()
    await asyncio.wait_for(stream.aclose(), timeout)
    elapsed = time.monotonic() - started
    if elapsed > timeout:
        raise ConformanceError(f"aclose() took {elapsed:.2f}s")
    if first.finish_reason is not None:
        subject.notes.append("the model finished at once; closing was not exercised")

    got_one = asyncio.Event()

    async def consume() -> None:
        async for _ in subject.harness.chat(subject.model_id, request):
            got_one.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_one.wait(), timeout * 10)
    task.cancel()
    started = time.monotonic()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        raise ConformanceError(f"a cancelled consumer was still running after {timeout}s")
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # The harness is still healthy afterwards.
    _check_stream(await _collect(subject.harness.chat(subject.model_id, subject.chat_request())), 10**9)


async def check_context_length(subject: CheckSubject) -> None:
    """A prompt longer than the context raises ContextLengthExceeded with the exact count."""
    limit = subject.harness.describe(subject.model_id).context_length
    if limit is None or limit > subject.options.context_probe_limit:
        raise ConformanceSkip(f"context length {limit} is not probed")
    words = limit
    for _ in range(4):
        request = subject.chat_request(content="hello " * words, max_tokens=1)
        counted = await subject.harness.count_tokens(subject.model_id, request)
        if counted > limit:
            break
        words *= 2
    else:
        raise ConformanceError("could not build a prompt longer than the context")
    try:
        await _collect(subject.harness.chat(subject.model_id, request))
    except ContextLengthExceeded as exc:
        if exc.prompt_tokens != counted:
            raise ConformanceError(
                f"error says {exc.prompt_tokens} tokens, count_tokens says {counted}"
            ) from exc
        if exc.limit != limit:
            raise ConformanceError(f"error says limit {exc.limit}, describe() says {limit}") from exc
        if exc.status != 400:
            raise ConformanceError(f"status {exc.status}, expected 400") from exc
        return
    raise ConformanceError(f"a {counted}-token prompt did not raise ContextLengthExceeded (limit {limit})")


async def check_unknown_model(subject: CheckSubject) -> None:
    """Every per-model method raises NotFound for a model that was never loaded."""
    missing = f"{subject.model_id}-not-loaded-conformance"
    harness = subject.harness
    request = subject.chat_request(model=missing)
    await _expect_not_found(lambda: _collect(harness.chat(missing, request)), "chat() of an unknown model")
    await _expect_not_found(
        lambda: harness.count_tokens(missing, request), "count_tokens() of an unknown model"
    )

    async def describe() -> None:
        harness.describe(missing)

    await _expect_not_found(describe, "describe() of an unknown model")


async def check_unload(subject: CheckSubject) -> None:
    """After ``unload``, the model is gone: chat and describe raise NotFound."""
    await subject.harness.unload(subject.model_id)
    request = subject.chat_request()
    await _expect_not_found(
        lambda: _collect(subject.harness.chat(subject.model_id, request)), "chat() after unload()"
    )

    async def describe() -> None:
        subject.harness.describe(subject.model_id)

    await _expect_not_found(describe, "describe() after unload()")


# -- checks on an embedding model ---------------------------------------------------------------


async def check_embeddings(subject: CheckSubject) -> None:
    """Vectors: one per input, one width, unit length when normalised, positive token count."""
    inputs = list(subject.options.embedding_inputs)
    for normalize in (True, False):
        result = await subject.harness.embed(subject.model_id, inputs, normalize=normalize)
        if len(result.vectors) != len(inputs):
            raise ConformanceError(f"{len(result.vectors)} vectors for {len(inputs)} inputs")
        widths = {len(vector) for vector in result.vectors}
        if not (len(widths) == 1 and widths != {0}):
            raise ConformanceError(f"inconsistent or empty vector widths {sorted(widths)}")
        if result.prompt_tokens <= 0:
            raise ConformanceError("prompt_tokens must be positive")
        for vector in result.vectors:
            if not all(math.isfinite(x) for x in vector):
                raise ConformanceError("vectors must be finite")
            if normalize:
                norm = math.sqrt(sum(x * x for x in vector))
                if abs(norm - 1.0) >= 1e-3:
                    raise ConformanceError(f"normalised vector has length {norm}")
    single = await subject.harness.embed(subject.model_id, inputs[:1], normalize=True)
    if len(single.vectors[0]) != len(result.vectors[0]):
        raise ConformanceError("vector width depends on the batch")


Check = Callable[[CheckSubject], Awaitable[None]]

# Order matters for run_conformance: one load serves them all, and unloading comes last.
CHAT_CHECKS: dict[str, Check] = {
    "describe": check_describe,
    "chat_stream": check_chat_stream,
    "complete_stream": check_complete_stream,
    "count_tokens": check_count_tokens,
    "close_stops": check_close_stops,
    "context_length": check_context_length,
    "unknown_model": check_unknown_model,
    "unload": check_unload,
}
EMBEDDING_CHECKS: dict[str, Check] = {
    "describe": check_describe,
    "embeddings": check_embeddings,
    "unload": check_unload,
}


async def _run_check(name: str, check: Check, subject: CheckSubject) -> CheckResult:
    subject.notes.clear()
    try:
        await check(subject)
    except ConformanceSkip as exc:
        return CheckResult(name, "skipped", str(exc))
    except Exception as exc:  # a harness bug is a failed check, not a crashed suite
        return CheckResult(name, "failed", f"{type(exc).__name__}: {exc}")
    return CheckResult(name, "passed", "; ".join(subject.notes))


async def _run_group(
    prefix: str,
    checks: dict[str, Check],
    harness: Harness,
    profile: ModelProfile,
    options: ConformanceOptions,
) -> list[CheckResult]:
    subject = CheckSubject(harness=harness, profile=profile, options=options)
    try:
        subject.description = await harness.load(profile)
    except Exception as exc:
        failed = [CheckResult(f"{prefix}.load", "failed", f"{type(exc).__name__}: {exc}")]
        return failed + [CheckResult(f"{prefix}.{name}", "skipped", "load failed") for name in checks]
    results = [CheckResult(f"{prefix}.load", "passed")]
    for name, check in checks.items():
        results.append(await _run_check(f"{prefix}.{name}", check, subject))
    return results


async def run_conformance(
    harness: Harness,
    chat_profile: ModelProfile,
    embedding_profile: ModelProfile | None = None,
    *,
    options: ConformanceOptions | None = None,
) -> ConformanceReport:
    """Run every check against ``harness``; the profiles are loaded once each and unloaded at the end."""
    chosen = options or ConformanceOptions()
    results = await _run_group("chat", CHAT_CHECKS, harness, chat_profile, chosen)
    if embedding_profile is not None:
        results += await _run_group("embedding", EMBEDDING_CHECKS, harness, embedding_profile, chosen)
    return ConformanceReport(tuple(results))


def _run_one(
    checks: dict[str, Check], name: str, harness: Harness, profile: ModelProfile, options: ConformanceOptions
) -> None:
    async def body() -> None:
        subject = CheckSubject(harness=harness, profile=profile, options=options)
        subject.description = await harness.load(profile)
        try:
            await checks[name](subject)
        finally:
            with contextlib.suppress(NotFound):
                await harness.unload(profile.id)

    try:
        asyncio.run(body())
    except ConformanceSkip as exc:
        import pytest

        pytest.skip(str(exc))


class HarnessConformanceTests:
    """Pytest base class: each conformance check as a test, with a fresh load per test.

    Subclass it as ``class TestMyHarness(HarnessConformanceTests)`` and define three *sync*
    fixtures: ``conformance_harness`` (a new harness), ``conformance_chat_profile`` and
    ``conformance_embedding_profile`` (a profile, or ``None`` to skip the embedding checks).
    Override :attr:`conformance_options` for slow models.
    """

    conformance_options: ClassVar[ConformanceOptions] = ConformanceOptions()

    def _chat(self, name: str, harness: Harness, profile: ModelProfile) -> None:
        _run_one(CHAT_CHECKS, name, harness, profile, self.conformance_options)

    def _embedding(self, name: str, harness: Harness, profile: ModelProfile | None) -> None:
        if profile is None:
            import pytest

            pytest.skip("no embedding profile given")
        _run_one(EMBEDDING_CHECKS, name, harness, profile, self.conformance_options)

    def test_conformance_describe(
        self, conformance_harness: Harness, conformance_chat_profile: ModelProfile
    ) -> None:
        self._chat("describe", conformance_harness, conformance_chat_profile)

    def test_conformance_chat_stream(
        self, conformance_harness: Harness, conformance_chat_profile: ModelProfile
    ) -> None:
        self._chat("chat_stream", conformance_harness, conformance_chat_profile)

    def test_conformance_complete_stream(
        self, conformance_harness: Harness, conformance_chat_profile: ModelProfile
    ) -> None:
        self._chat("complete_stream", conformance_harness, conformance_chat_profile)

    def test_conformance_count_tokens(
        self, conformance_harness: Harness, conformance_chat_profile: ModelProfile
    ) -> None:
        self._chat("count_tokens", conformance_harness, conformance_chat_profile)

    def test_conformance_close_stops(
        self, conformance_harness: Harness, conformance_chat_profile: ModelProfile
    ) -> None:
        self._chat("close_stops", conformance_harness, conformance_chat_profile)

    def test_conformance_context_length(
        self, conformance_harness: Harness, conformance_chat_profile: ModelProfile
    ) -> None:
        self._chat("context_length", conformance_harness, conformance_chat_profile)

    def test_conformance_unknown_model(
        self, conformance_harness: Harness, conformance_chat_profile: ModelProfile
    ) -> None:
        self._chat("unknown_model", conformance_harness, conformance_chat_profile)

    def test_conformance_unload(
        self, conformance_harness: Harness, conformance_chat_profile: ModelProfile
    ) -> None:
        self._chat("unload", conformance_harness, conformance_chat_profile)

    def test_conformance_embeddings(
        self, conformance_harness: Harness, conformance_embedding_profile: ModelProfile | None
    ) -> None:
        self._embedding("embeddings", conformance_harness, conformance_embedding_profile)

    def test_conformance_embedding_describe(
        self, conformance_harness: Harness, conformance_embedding_profile: ModelProfile | None
    ) -> None:
        self._embedding("describe", conformance_harness, conformance_embedding_profile)
