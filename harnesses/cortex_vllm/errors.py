"""vLLM's exceptions as the kernel's errors, so the neuron answers each with the right status.

vLLM splits its errors into client errors (``VLLMClientError``: the request was wrong) and
server errors (``VLLMServerError``); admission rejections carry their own HTTP status. The
mapping keeps that split: 4xx stays 4xx, a full queue is a 503 a client may retry elsewhere,
and a dead engine core says what the operator has to do.
"""

from __future__ import annotations

from http import HTTPStatus

from vllm.exceptions import (
    GracefulHTTPError,
    RetryableRequestError,
    VLLMClientError,
    VLLMValidationError,
)
from vllm.v1.engine.exceptions import EngineDeadError

from cortex_kernel.errors import BadRequest, CortexError, Overloaded


def _message(exc: BaseException) -> str:
    return str(exc.args[0]) if exc.args else type(exc).__name__


def translate(exc: Exception, model_id: str) -> CortexError:
    """The kernel error for an exception raised by ``AsyncLLM`` while serving ``model_id``."""
    if isinstance(exc, CortexError):
        return exc
    if isinstance(exc, VLLMValidationError):
        return BadRequest(_message(exc), code="invalid_value", param=exc.parameter)
    if isinstance(exc, GracefulHTTPError):
        if exc.http_status == HTTPStatus.SERVICE_UNAVAILABLE:
            return Overloaded(exc.message, code="engine_busy", retry_after=1)
        return CortexError(exc.message, status=int(exc.http_status), code="engine_refused")
    if isinstance(exc, VLLMClientError):
        return BadRequest(_message(exc), code="invalid_request")
    if isinstance(exc, EngineDeadError):
        return CortexError(
            f"the vLLM engine of model {model_id!r} died; unload and load the model again",
            status=503,
            code="engine_dead",
        )
    if isinstance(exc, RetryableRequestError):
        return Overloaded(_message(exc), code="engine_busy", retry_after=1)
    return CortexError(f"vLLM failed: {type(exc).__name__}: {exc}", code="engine_error")
