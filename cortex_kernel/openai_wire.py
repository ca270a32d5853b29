"""OpenAI wire types that the neuron, the harnesses and the dialect plugins share.

Inbound requests accept unknown fields (newer clients send fields we do not know yet), keep the
message list as plain JSON (chat templates consume it as such), and are range-checked by
:func:`check_chat_request`, so that a type error is a 422 and a bad value is a 400.
"""

from __future__ import annotations

from typing import Any

import msgspec

from cortex_kernel.errors import BadRequest


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False


class ChatRequest(msgspec.Struct, kw_only=True):
    """``POST /v1/chat/completions``: the fields a harness acts on."""

    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    stream_options: StreamOptions | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    ignore_eos: bool = False
    user: str | None = None

    @property
    def output_limit(self) -> int | None:
        """``max_completion_tokens`` wins over the older ``max_tokens``."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def stop_sequences(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class CompletionRequest(msgspec.Struct, kw_only=True):
    """``POST /v1/completions``: raw-prompt generation."""

    model: str
    prompt: str | list[str]
    stream: bool = False
    max_tokens: int | None = 16
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    echo: bool = False
    ignore_eos: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    @property
    def stop_sequences(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class EmbeddingRequest(msgspec.Struct, kw_only=True):
    """``POST /v1/embeddings``. ``normalize`` is our extension; OpenAI vectors are unit length."""

    model: str
    input: str | list[str]
    encoding_format: str = "float"
    dimensions: int | None = None
    normalize: bool = True
    user: str | None = None

    @property
    def inputs(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


def _check_range(name: str, value: float | None, low: float, high: float | None = None) -> None:
    if value is None:
        return
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise BadRequest(f"'{name}' must be {bound}, got {value}", code="invalid_value", param=name)


def check_chat_request(request: ChatRequest | CompletionRequest) -> None:
    """Reject out-of-range values with a 400 that names the parameter."""
    if isinstance(request, ChatRequest):
        if not request.messages:
            raise BadRequest("'messages' must not be empty", code="invalid_value", param="messages")
        _check_range("max_completion_tokens", request.max_completion_tokens, 1)
        _check_range("min_p", request.min_p, 0.0, 1.0)
    _check_range("max_tokens", request.max_tokens, 1)
    _check_range("temperature", request.temperature, 0.0, 2.0)
    _check_range("top_p", request.top_p, 0.0, 1.0)
    _check_range("top_k", request.top_k, -1)
    if request.n != 1:
        raise BadRequest("only n=1 is supported", code="invalid_value", param="n")
