"""The error model every daemon and plugin shares.

Handlers raise :class:`CortexError` (or a subclass); one exception handler per dialect turns it
into that dialect's envelope. Keeping the status, machine-readable code and retry hint on the
exception means no handler builds an error body by hand.
"""

from __future__ import annotations

from typing import Any

import msgspec


class CortexError(Exception):
    """An error with an HTTP status, an OpenAI-style ``type``/``code`` and an optional retry hint.

    ``type`` follows OpenAI's vocabulary (``invalid_request_error``, ``authentication_error``,
    ``permission_error``, ``not_found_error``, ``rate_limit_error``, ``api_error``,
    ``overloaded_error``); dialects map it to their own names.
    """

    status: int = 500
    type: str = "api_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if code is not None:
            self.code = code
        self.param = param
        self.retry_after = retry_after
        self.extra = extra or {}


class BadRequest(CortexError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(CortexError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(CortexError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class NotFound(CortexError):
    status = 404
    type = "not_found_error"
    code = "not_found"


class Conflict(CortexError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(CortexError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UnprocessableEntity(CortexError):
    status = 422
    type = "invalid_request_error"
    code = "invalid_type"


class Overloaded(CortexError):
    """The request is fine but there is no room for it now; clients should retry."""

    status = 503
    type = "overloaded_error"
    code = "service_unavailable"


class UpstreamError(CortexError):
    status = 502
    type = "api_error"
    code = "upstream_error"


class _OpenAIErrorBody(msgspec.Struct, omit_defaults=False):
    """OpenAI's four fields, then the structured facts of a prompt that does not fit (present
    only then), so a dialect can word its own "prompt is too long" without parsing English."""

    message: str
    type: str
    code: str | None
    param: str | None
    prompt_tokens: int | msgspec.UnsetType = msgspec.UNSET
    context_length: int | msgspec.UnsetType = msgspec.UNSET


class _OpenAIEnvelope(msgspec.Struct):
    error: _OpenAIErrorBody


_encoder = msgspec.json.Encoder()


def openai_error_body(error: CortexError) -> bytes:
    """Encode ``error`` as OpenAI's ``{"error": {message, type, code, param}}`` envelope, plus
    ``prompt_tokens`` and ``context_length`` when ``error.extra`` has both (an over-long prompt)."""
    body = _OpenAIErrorBody(message=error.message, type=error.type, code=error.code, param=error.param)
    prompt_tokens, context_length = error.extra.get("prompt_tokens"), error.extra.get("context_length")
    if isinstance(prompt_tokens, int) and isinstance(context_length, int):
        body.prompt_tokens, body.context_length = prompt_tokens, context_length
    return _encoder.encode(_OpenAIEnvelope(error=body))


def retry_headers(error: CortexError) -> dict[str, str]:
    """Headers that tell a client when to come back (``Retry-After`` in whole seconds)."""
    if error.retry_after is None:
        return {}
    return {"retry-after": str(max(1, round(error.retry_after)))}
