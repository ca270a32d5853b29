"""Where client authentication plugs into this dialect.

The gateway's client keys (``[auth] api_keys`` with ``require_api_key``) are checked by its own
auth middleware before any route runs, for every dialect alike. This is a further seam, per
dialect: the default :class:`AcceptAnyKey` adds no check of its own, whether the request carries
``x-api-key`` (the SDK's ``api_key``, Claude Code's ``ANTHROPIC_API_KEY``), ``Authorization:
Bearer`` (``auth_token``, ``ANTHROPIC_AUTH_TOKEN``), both, or neither. Every route calls the
dialect's :class:`Authenticator` before it reads the body, so a stricter rule means passing a
different authenticator to :class:`cortex_anthropic.dialect.AnthropicDialect`; its
:class:`cortex_kernel.errors.CortexError` (401 ``authentication_error``, 403
``permission_error``) is rendered in Anthropic's envelope like any other error.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from starlette.requests import Request


def presented_key(request: Request) -> str | None:
    """The credential a client sent: ``x-api-key`` first, then a bearer token."""
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


@runtime_checkable
class Authenticator(Protocol):
    """Decides whether a request may use the dialect's routes."""

    async def authenticate(self, request: Request) -> None:
        """Return to let the request in; raise ``CortexError`` (401/403) to refuse it."""
        ...


class AcceptAnyKey:
    """Lets every request in and ignores its credentials (the gateway's middleware checks keys)."""

    async def authenticate(self, request: Request) -> None:
        return None
