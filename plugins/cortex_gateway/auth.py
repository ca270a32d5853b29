"""Client and admin authentication for the gateway, as pure ASGI middleware.

Client keys (``[auth] api_keys``) guard the API when ``require_api_key`` is set; without it any
key is accepted, because OpenAI clients send placeholder tokens. The admin surface needs one of
``admin_keys`` when any are configured, and otherwise answers only loopback clients; an admin key
is accepted wherever a client key is (the console's playground chats with it). A refusal comes in
the envelope of the dialect the caller speaks (the first dialect plugin that
:meth:`~cortex_kernel.dialect.Dialect.claims` the request, else OpenAI's), and each rejection is
a ``RequestFinished`` event (model ``unknown``, no node), so a client with a wrong key shows up in
the metrics.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from cortex_gateway.cross_site import cross_site
from cortex_kernel.config.schema import AuthSection
from cortex_kernel.dialect import Dialect
from cortex_kernel.errors import CortexError, Forbidden, Unauthorized, openai_error_body, retry_headers
from cortex_kernel.events import EventBus, RequestFinished
from cortex_kernel.keys import KeySet, presented_key

# Claude Code's warm-up probe and telemetry sink (answered empty by the Anthropic dialect) are
# public: Claude Code may send them without the key it uses for /v1/messages.
PUBLIC = frozenset(
    {"/", "/health", "/health/live", "/health/ready", "/api/hello", "/api/event_logging/batch"}
)
# Paths whose plugin checks admin keys itself: the console's page and assets hold no data, and its
# data routes answer only admins (a client key there is 403, not the 401 of a missing key).
SELF_GUARDED = "/console"
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def self_guarded(path: str) -> bool:
    return path == SELF_GUARDED or path.startswith(SELF_GUARDED + "/")


OPENAI = "openai"  # the gateway's own routes speak OpenAI's dialect


class ClientKeys:
    """Whether a request to a client route may pass: any key will do unless ``require_api_key``,
    and then a client or an admin key must be presented."""

    def __init__(self, auth: AuthSection) -> None:
        self.require = auth.require_api_key
        self.clients = KeySet(auth.api_keys)
        self.admins = KeySet(auth.admin_keys)

    def accepts(self, key: str | None) -> bool:
        return self.clients.accepts(key) or self.admins.accepts(key)

    def admits(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """Whether a client route lets a request with these (ASGI) headers through."""
        return not self.require or self.accepts(presented_key(dict(headers)))


class GatewayAuth:
    """Checks keys before any handler runs; per-request state stays inside ``__call__``."""

    def __init__(
        self,
        app: ASGIApp,
        auth: AuthSection,
        events: EventBus | None = None,
        dialects: Sequence[Dialect] = (),
    ) -> None:
        self.app = app
        self.events = events or EventBus()
        self.keys = ClientKeys(auth)
        self.dialects = tuple(dialects)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The app's own awaitable where there is nothing to check (a tail call, not an ``await``:
        no frame of this middleware stays in the request's await chain, which each resumption of
        its task walks, twice or more per relayed stream); the check's coroutine otherwise."""
        if scope["type"] != "http" or scope["path"] in PUBLIC or self_guarded(scope["path"]):
            return self.app(scope, receive, send)
        path: str = scope["path"]
        admin = path.startswith("/admin")
        if not admin and not self.keys.require:  # any key will do: nothing to look at (the hot path)
            return self.app(scope, receive, send)
        return self._checked(scope, receive, send, path, admin)

    async def _checked(self, scope: Scope, receive: Receive, send: Send, path: str, admin: bool) -> None:
        started = time.perf_counter()
        error: CortexError | None = None
        if admin:
            if (why := cross_site(scope)) is not None:
                error = Forbidden(why, code="cross_site")
            elif self.keys.admins:
                if not self.keys.admins.accepts(presented_key(dict(scope["headers"]))):
                    error = Unauthorized("an admin key is required for /admin")
            elif (scope.get("client") or ("", 0))[0] not in LOOPBACK:
                error = Forbidden("the admin API answers loopback clients only until admin_keys are set")
        elif not self.keys.accepts(presented_key(dict(scope["headers"]))):
            error = Unauthorized("missing or unknown API key")
        if error is not None:
            dialect, response = self.refusal(scope, error)
            await response(scope, receive, send)
            self.events.emit(
                RequestFinished(
                    dialect=dialect,
                    endpoint=path,
                    model="unknown",
                    node=None,
                    status=response.status_code,
                    error=error.code,
                    duration_s=time.perf_counter() - started,
                )
            )
            return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope, error: CortexError) -> tuple[str, Response]:
        """The name of the dialect the caller speaks, and ``error`` rendered in it."""
        connection = HTTPConnection(scope)
        for dialect in self.dialects:
            if dialect.claims(connection):
                return dialect.name, dialect.render_error(error)
        body = openai_error_body(error)
        return OPENAI, Response(body, error.status, retry_headers(error), media_type="application/json")
