"""Errors in Anthropic's envelope, and neuron (OpenAI-envelope) errors turned into ours.

Everything raised on this dialect's routes is a :class:`cortex_kernel.errors.CortexError`; the
routes render it here, because the kernel's own handler would answer in OpenAI's envelope.

Status choices:

* every client mistake the API reports as 400 (bad JSON, wrong types, 415, 422, 409) is
  ``400 invalid_request_error``; 401/403/404/413/429 keep their Anthropic types;
* "no capacity now" (a model loading, a queue full, a node out of memory: the kernel's 503
  ``overloaded_error``) is **529 overloaded_error with Retry-After**. 529 is what Anthropic
  itself sends, what the SDKs map to ``OverloadedError``, and what Claude Code treats as
  "overloaded, retry"; the SDKs honour Retry-After on any retried status;
* 429 and 529 (and a bare 503) carry ``retry-after`` in whole seconds and
  ``x-should-retry: true``; other 4xx say ``x-should-retry: false``;
* other 5xx keep their status (500, 502 upstream failure) as ``api_error``; 504 is
  ``timeout_error``.

A prompt that does not fit the model answers 400 with the real API's wording,
``prompt is too long: N tokens > M maximum``, which clients such as Claude Code recognise and
answer by compacting the conversation.
"""

from __future__ import annotations

import secrets

import msgspec
from starlette.responses import Response

from cortex_anthropic.chat_protocol import OpenAIError, OpenAIErrorEnvelope
from cortex_anthropic.protocol import ErrorBody, ErrorEvent
from cortex_kernel.errors import BadRequest, CortexError, retry_headers

OVERLOADED_STATUS = 529
RETRYABLE_STATUSES = frozenset({429, 503, OVERLOADED_STATUS})
DEFAULT_RETRY_AFTER_S = 2.0

_TYPES_BY_STATUS = {
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    OVERLOADED_STATUS: "overloaded_error",
}

_encode = msgspec.json.Encoder().encode
_envelope_decoder = msgspec.json.Decoder(OpenAIErrorEnvelope)


def new_request_id() -> str:
    """A ``req_…`` id, sent as the ``request-id`` header and inside error bodies."""
    return "req_" + secrets.token_hex(12)


def anthropic_status(error: CortexError) -> tuple[int, str]:
    """The HTTP status and Anthropic ``error.type`` for ``error``."""
    status = error.status
    if status == 503 or error.type == "overloaded_error":
        status = OVERLOADED_STATUS
    elif 400 <= status < 500 and status not in _TYPES_BY_STATUS:
        status = 400
    elif status < 400:
        status = 500
    return status, _TYPES_BY_STATUS.get(status, "invalid_request_error" if status == 400 else "api_error")


def error_event(error: CortexError, request_id: str | None = None) -> ErrorEvent:
    """``error`` as the envelope ``{"type": "error", "error": {type, message}}``."""
    _, kind = anthropic_status(error)
    return ErrorEvent(error=ErrorBody(type=kind, message=error.message), request_id=request_id)


def retry_advice(status: int, error: CortexError) -> dict[str, str]:
    """``retry-after`` (whole seconds) and ``x-should-retry`` for a status Claude Code acts on.

    Claude Code and the SDKs obey ``x-should-retry`` over their own status rules, and wait
    ``retry-after`` seconds (Claude Code gives up on waits above 60 s). A retryable status
    without a hint of its own gets :data:`DEFAULT_RETRY_AFTER_S`; a client mistake says
    ``false``, so no client resends a request that cannot succeed.
    """
    if status in RETRYABLE_STATUSES:
        seconds = DEFAULT_RETRY_AFTER_S if error.retry_after is None else error.retry_after
        return {"retry-after": str(max(1, round(seconds))), "x-should-retry": "true"}
    if 400 <= status < 500:
        return {"x-should-retry": "false"}
    return retry_headers(error)


def error_response(error: CortexError, request_id: str) -> Response:
    """An HTTP error response in Anthropic's envelope, with the retry advice of its status."""
    status, _ = anthropic_status(error)
    headers = {"request-id": request_id, **retry_advice(status, error)}
    return Response(
        _encode(error_event(error, request_id)),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def prompt_too_long(prompt_tokens: int, context_length: int) -> BadRequest:
    """The real API's wording: the maximum is the largest prompt that leaves room for output."""
    return BadRequest(
        f"prompt is too long: {prompt_tokens} tokens > {context_length - 1} maximum",
        code="context_length_exceeded",
        param="messages",
        extra={"prompt_tokens": prompt_tokens, "context_length": context_length},
    )


def from_neuron(status: int, body: bytes, retry_after: str | None) -> CortexError:
    """A neuron's OpenAI-envelope error reply (or a bare status) as a :class:`CortexError`."""
    retry = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
    try:
        error = _envelope_decoder.decode(body).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        return CortexError(f"the model server answered HTTP {status}", status=status, retry_after=retry)
    if error.code == "context_length_exceeded":
        return _too_long(error)
    return CortexError(
        error.message or f"the model server answered HTTP {status}",
        status=status,
        type=error.type or None,
        code=error.code,
        param=error.param,
        retry_after=retry,
    )


def _too_long(error: OpenAIError) -> BadRequest:
    """The neuron's ``context_length_exceeded``: the real API's wording when it sent the counts
    (a prompt too large even to tokenize has none, and keeps the neuron's message)."""
    if error.prompt_tokens is not None and error.context_length is not None:
        return prompt_too_long(error.prompt_tokens, error.context_length)
    return BadRequest(f"prompt is too long: {error.message}", code=error.code, param="messages")


def from_stream_error(error: OpenAIError) -> CortexError:
    """An error frame inside a neuron's stream (sent after its 200 headers)."""
    if error.code == "context_length_exceeded":
        return _too_long(error)
    kind = error.type
    status = {"overloaded_error": 503, "invalid_request_error": 400, "not_found_error": 404}.get(
        kind or "", 500
    )
    return CortexError(error.message or "generation failed", status=status, type=kind, code=error.code)
