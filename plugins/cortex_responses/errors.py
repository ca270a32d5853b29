"""Errors in OpenAI's envelope, and the ``response.failed`` codes a stream ends with.

Everything raised on this dialect's routes is a :class:`cortex_kernel.errors.CortexError`,
rendered as ``{"error": {message, type, code, param}}`` with its own status (503 and 429 with
``Retry-After``). A prompt that does not fit the model is 400 ``context_length_exceeded`` — the
code Codex recognises and answers by compacting — and the message gives both numbers: the
input's tokens and the model's context window.
"""

from __future__ import annotations

from starlette.responses import Response

from cortex_kernel.errors import BadRequest, CortexError, openai_error_body, retry_headers


def input_too_long(input_tokens: int, context_length: int) -> BadRequest:
    return BadRequest(
        f"Your input exceeds the context window of this model: the input is {input_tokens} tokens and "
        f"the context window is {context_length} tokens (at most {context_length - 1} input tokens, "
        "to leave room for output). Please shorten the input and try again.",
        code="context_length_exceeded",
        param="input",
        extra={"prompt_tokens": input_tokens, "context_length": context_length},
    )


def previous_response_not_found(response_id: str) -> BadRequest:
    return BadRequest(
        f"Previous response with id '{response_id}' not found. Responses are kept in this gateway's "
        "memory for a limited time; with several gateways, use store: false or sticky routing.",
        code="previous_response_not_found",
        param="previous_response_id",
    )


def openai_error(error: CortexError) -> CortexError:
    """``error`` with this dialect's wording where it differs from the shared translation's."""
    prompt_tokens, context_length = error.extra.get("prompt_tokens"), error.extra.get("context_length")
    if (
        error.code == "context_length_exceeded"
        and isinstance(prompt_tokens, int)
        and isinstance(context_length, int)
    ):
        return input_too_long(prompt_tokens, context_length)  # the structured fields, not the wording
    return error


def error_response(error: CortexError) -> Response:
    """An HTTP error response in OpenAI's envelope, with Retry-After when there is a hint."""
    error = openai_error(error)
    status = error.status if 400 <= error.status < 600 else 500
    return Response(
        openai_error_body(error),
        status_code=status,
        media_type="application/json",
        headers=retry_headers(error),
    )


def failure_code(error: CortexError) -> str:
    """The ``response.failed`` error code: what a client can act on (compact, wait, or give up)."""
    if error.code == "context_length_exceeded":
        return "context_length_exceeded"
    if error.status in (429, 503) or error.type in ("overloaded_error", "rate_limit_error"):
        return "rate_limit_exceeded"
    if 400 <= error.status < 500:
        return "invalid_prompt"
    return "server_error"


def failure_message(error: CortexError) -> str:
    """The message, with the retry hint in the words clients parse ("try again in Ns")."""
    message = openai_error(error).message
    if error.retry_after is not None and failure_code(error) == "rate_limit_exceeded":
        message += f" Please try again in {max(1.0, error.retry_after):g}s."
    return message
