"""Who may see the console's data, and which browser requests may change anything.

The console's data follows the admin API's rule: one of ``[auth] admin_keys`` when any are
configured, loopback clients only when none are. A valid *client* key is told 403 (it is known,
but not an admin), anything else 401. Keys come in the ``Authorization`` header, never the URL.

Cross-site request forgery: the gateway refuses a forged state-changing browser request to
``/admin`` itself (:mod:`cortex_gateway.cross_site`), with or without this plugin; the same rule
guards the console's own routes here.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from cortex_gateway.auth import LOOPBACK
from cortex_gateway.cross_site import cross_site
from cortex_kernel.app import error_response
from cortex_kernel.config.schema import AuthSection
from cortex_kernel.errors import CortexError, Forbidden, Unauthorized
from cortex_kernel.keys import KeySet, presented_key

GUARDED_PREFIX = "/console"  # the gateway guards /admin itself (cortex_gateway.cross_site)


class AdminCheck:
    """The admin API's rule, with a 403 for client keys."""

    def __init__(self, auth: AuthSection) -> None:
        self.admins = KeySet(auth.admin_keys)
        self.clients = KeySet(auth.api_keys)

    def verdict(self, scope: Scope) -> CortexError | None:
        headers = dict(scope["headers"])
        key = presented_key(headers)
        if self.admins:
            if self.admins.accepts(key):
                return None
            if self.clients.accepts(key):
                return Forbidden("the console needs an admin key; this is a client key", code="not_admin")
            return Unauthorized("an admin key is required for the console")
        if (scope.get("client") or ("", 0))[0] not in LOOPBACK:
            return Forbidden("the console answers loopback clients only until admin_keys are set")
        return None


class CrossSiteGuard:
    """Pure ASGI middleware: refuses forged state-changing browser requests to the console.

    Mounted only on the console's routes (``RouteMiddleware((GUARDED_PREFIX,), ...)``), so it
    does not look at the path itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (why := cross_site(scope)) is not None:
            await error_response(Forbidden(why, code="cross_site"))(scope, receive, send)
            return
        await self.app(scope, receive, send)
