"""OpenAI requests as vLLM's own request objects, and from those the ``SamplingParams``.

The harness hands a request to vLLM's ``ChatCompletionRequest`` / ``CompletionRequest`` rather
than mapping fields by hand: their ``to_sampling_params`` is exactly what vLLM's OpenAI server
does (the priority of request, checkpoint and OpenAI defaults; ``response_format`` to
structured outputs; stop strings, penalties, logprobs, ``ignore_eos``), their validators give
the same 400s, and vLLM's renderer and output parsers take these objects as input anyway.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
import pydantic
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
from vllm.entrypoints.openai.completion.protocol import CompletionRequest as VllmCompletionRequest
from vllm.exceptions import VLLMValidationError
from vllm.renderers.params import TokenizeParams
from vllm.sampling_params import RequestOutputKind, SamplingParams

from cortex_kernel.errors import BadRequest
from cortex_kernel.openai_wire import ChatRequest, CompletionRequest


class _Unlimited:
    """A model config that reports no context limit; everything else is the real config's."""

    max_model_len = None

    def __init__(self, config: Any) -> None:
        self._config = config

    def __getattr__(self, name: str) -> Any:
        return getattr(self._config, name)


class ExactChatRequest(ChatCompletionRequest):
    """vLLM's chat request, tokenized in full, without vLLM's context-length checks.

    vLLM's renderer stops tokenizing one token past the context, and refuses a ``max_tokens``
    larger than the context, so that it can reject such requests cheaply. The harness contract
    wants the exact prompt length instead (``ContextLengthExceeded.prompt_tokens``,
    ``count_tokens``) and clamps an oversized ``max_tokens`` to the room left, so the harness
    checks the limits itself after rendering.
    """

    def build_tok_params(self, model_config: Any) -> TokenizeParams:
        unlimited: Any = _Unlimited(model_config)
        return super().build_tok_params(unlimited)


class ExactCompletionRequest(VllmCompletionRequest):
    """vLLM's completion request, tokenized in full (see :class:`ExactChatRequest`)."""

    def build_tok_params(self, model_config: Any) -> TokenizeParams:
        unlimited: Any = _Unlimited(model_config)
        return super().build_tok_params(unlimited)


def _fields(request: msgspec.Struct, drop: frozenset[str]) -> dict[str, Any]:
    values = msgspec.structs.asdict(request)
    return {key: value for key, value in values.items() if value is not None and key not in drop}


_Request = TypeVar("_Request", bound=pydantic.BaseModel)


def _validate(cls: type[_Request], data: dict[str, Any]) -> _Request:
    try:
        return cls.model_validate(data)
    except VLLMValidationError as exc:
        raise BadRequest(str(exc.args[0]), code="invalid_value", param=exc.parameter) from exc
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        raise BadRequest(f"{where}: {first.get('msg')}", code="invalid_value", param=where or None) from exc


def vllm_chat_request(request: ChatRequest) -> ExactChatRequest:
    """``request`` as vLLM's chat request, always streaming (the harness streams deltas)."""
    data = _fields(request, frozenset({"stream", "stream_options"}))
    return _validate(ExactChatRequest, {**data, "stream": True})


def vllm_completion_request(request: CompletionRequest) -> ExactCompletionRequest:
    """``request`` as vLLM's completion request; ``echo`` is left to the harness."""
    data = _fields(request, frozenset({"stream", "stream_options", "echo"}))
    return _validate(ExactCompletionRequest, {**data, "stream": True})


def sampling_params(
    request: ChatCompletionRequest | VllmCompletionRequest, max_tokens: int, defaults: dict[str, Any]
) -> SamplingParams:
    """vLLM's own mapping of ``request`` (``defaults``: the checkpoint's generation config).

    Output always comes as deltas: each ``RequestOutput`` carries only new tokens, and vLLM
    merges them when the consumer lags, so a slow client never makes the harness re-diff text.
    """
    params = request.to_sampling_params(max_tokens, defaults)
    params.output_kind = RequestOutputKind.DELTA
    return params
