"""The harness contract: how the neuron drives an inference engine on one host.

A harness is a plugin. Its distribution exposes a module under the ``cortex_kernel`` entry-point
group whose ``register_harnesses`` hook returns :class:`HarnessSpec` objects; the neuron builds
each harness named in ``neuron.toml`` (or needed by a model profile) once at start-up with a
:class:`HarnessContext`, then calls the async methods of the :class:`Harness` protocol.

Rules every harness follows (the conformance suite in ``cortex_kernel.testing.conformance``
checks them):

* ``load`` returns only when the model can serve; the neuron shows ``loading`` meanwhile and
  guarantees that a model id is never loaded twice concurrently (single flight).
* ``chat``/``complete`` are async generators of :class:`Delta`. The last delta carries
  ``finish_reason`` and ``usage``. Work must stop promptly when the generator is closed (the
  client went away); blocking work must run off the event loop.
* Errors are :class:`cortex_kernel.errors.CortexError` subclasses, e.g.
  :class:`ContextLengthExceeded`; anything else is reported as a 500 by the neuron.
* A harness that can prove how many bytes of prompt its tokens stand for at most sets
  ``ModelDescription.max_prompt_bytes`` and refuses a longer rendered prompt with
  :class:`PromptTooLarge` (see :func:`check_prompt_size`) before tokenizing it, so that a prompt
  far over the context costs neither the time nor the memory of tokenizing it in full. The field
  is optional: a harness that leaves it ``None`` tokenizes every prompt, as before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.errors import BadRequest
from cortex_kernel.openai_wire import ChatRequest, CompletionRequest

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


class ContextLengthExceeded(BadRequest):
    """The prompt (plus the requested output) does not fit the model's context."""

    code = "context_length_exceeded"

    def __init__(self, prompt_tokens: int, limit: int) -> None:
        super().__init__(
            f"This model's maximum context length is {limit} tokens, "
            f"but the prompt has {prompt_tokens} tokens.",
            param="messages",
            extra={"prompt_tokens": prompt_tokens, "context_length": limit},
        )
        self.prompt_tokens = prompt_tokens
        self.limit = limit


class PromptTooLarge(BadRequest):
    """The rendered prompt is larger in bytes than the model's context could ever hold.

    Same ``code`` as :class:`ContextLengthExceeded`, so every dialect maps it to its own
    "prompt is too long" error; the message names bytes because the prompt was never tokenized.
    """

    code = "context_length_exceeded"

    def __init__(self, prompt_bytes: int, max_prompt_bytes: int, limit: int) -> None:
        super().__init__(
            f"This model's maximum context length is {limit} tokens, but the prompt is {prompt_bytes} "
            f"bytes; a context of {limit} tokens holds at most {max_prompt_bytes} bytes.",
            param="messages",
            extra={
                "prompt_bytes": prompt_bytes,
                "max_prompt_bytes": max_prompt_bytes,
                "context_length": limit,
            },
        )
        self.prompt_bytes = prompt_bytes
        self.max_prompt_bytes = max_prompt_bytes
        self.limit = limit


EXACT_COUNT_BYTES = 256 * 1024
"""Prompts up to this size are always tokenized, whatever ``max_prompt_bytes`` says: that costs
well under a second, and the refusal then names the exact token count, which clients such as
Claude Code read to decide how much to compact."""


def check_prompt_size(text: str, max_prompt_bytes: int | None, limit: int) -> None:
    """Raise :class:`PromptTooLarge` when ``text`` is more UTF-8 bytes than ``max_prompt_bytes``
    (and than :data:`EXACT_COUNT_BYTES`).

    Cheap next to tokenizing: at most one encode of the text, and none when even the character
    count (a lower bound on the byte count) is over, or when four bytes per character (an upper
    bound) is not.
    """
    if max_prompt_bytes is None:
        return
    threshold = max(max_prompt_bytes, EXACT_COUNT_BYTES)
    if len(text) * 4 <= threshold:
        return
    size = len(text) if len(text) > threshold else len(text.encode("utf-8", "surrogatepass"))
    if size > threshold:
        raise PromptTooLarge(size, max_prompt_bytes, limit)


class ToolCallDelta(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A fragment of one tool call; ``id`` and ``name`` arrive with the call's first fragment."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class Usage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Delta(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One step of a generation: visible text, reasoning text, tool-call fragments, or the end."""

    text: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCallDelta] = msgspec.field(default_factory=list)
    finish_reason: FinishReason | None = None
    usage: Usage | None = None


class Embeddings(msgspec.Struct, kw_only=True):
    vectors: list[list[float]]
    prompt_tokens: int


class ModelDescription(msgspec.Struct, kw_only=True):
    """What a loaded model looks like, for ``GET /models`` and placement decisions.

    ``max_prompt_bytes`` is the size, in UTF-8 bytes of the rendered prompt, above which the
    prompt certainly does not fit ``context_length`` (the harness refuses it with
    :class:`PromptTooLarge` before tokenizing); ``None`` where the harness knows no such bound.
    """

    context_length: int | None = None
    max_prompt_bytes: int | None = None
    memory_bytes: int | None = None
    devices: list[int] = msgspec.field(default_factory=list)
    task: Literal["chat", "embedding"] = "chat"
    capabilities: list[str] = msgspec.field(default_factory=list)


class HarnessContext(msgspec.Struct, kw_only=True, frozen=True):
    """What the neuron hands a harness when it builds it.

    ``options`` is the harness's own ``[harnesses.NAME]`` table from ``neuron.toml``;
    ``cache_dir`` is where downloaded or generated weights may be written; ``model_roots`` are the
    only local directories a profile's ``source`` may point into.
    """

    options: dict[str, Any] = msgspec.field(default_factory=dict)
    cache_dir: Path = Path(".")
    model_roots: tuple[Path, ...] = ()


@runtime_checkable
class Harness(Protocol):
    """An inference engine embedded in the neuron process."""

    name: str
    supports_sleep: bool

    async def load(self, profile: ModelProfile) -> ModelDescription:
        """Load ``profile`` and return once it can serve. Raise ``CortexError`` on failure."""
        ...

    async def unload(self, model_id: str) -> None:
        """Free everything ``model_id`` holds (weights, caches, device memory)."""
        ...

    async def sleep(self, model_id: str) -> None:
        """Release device memory but keep enough to wake quickly (only if ``supports_sleep``)."""
        ...

    async def wake(self, model_id: str) -> None:
        """Undo :meth:`sleep`."""
        ...

    def chat(self, model_id: str, request: ChatRequest) -> AsyncIterator[Delta]:
        """Render the model's chat template and stream the reply as deltas."""
        ...

    def complete(self, model_id: str, request: CompletionRequest) -> AsyncIterator[Delta]:
        """Stream a raw-prompt completion as deltas."""
        ...

    async def embed(self, model_id: str, inputs: list[str], *, normalize: bool) -> Embeddings:
        """Embed ``inputs`` with an embedding model."""
        ...

    async def count_tokens(self, model_id: str, request: ChatRequest) -> int:
        """Exact prompt token count after the chat template, as ``chat`` would see it."""
        ...

    def describe(self, model_id: str) -> ModelDescription:
        """Current description of a loaded model (memory can change after load)."""
        ...


class HarnessSpec(msgspec.Struct, kw_only=True, frozen=True):
    """What ``register_harnesses`` returns: a name and a factory that builds the harness."""

    name: str
    factory: Callable[[HarnessContext], Harness]
    description: str = ""
    # Profile options that choose a place on disk (a cache directory) or make the harness import
    # code. The neuron refuses them in an inline profile unless neuron.toml allows it
    # (allow_inline_cache_dirs, allow_inline_remote_code): the network must not pick either.
    path_options: frozenset[str] = frozenset()
    code_options: frozenset[str] = frozenset()
    # The options the harness reads (its [harnesses.NAME] table and each profile's ``options``),
    # as a Struct with ``forbid_unknown_fields``: ``config check`` and start-up validate every
    # model's options against it, with file and line. ``None``: the harness declares none.
    options: type[msgspec.Struct] | None = None
