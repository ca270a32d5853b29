"""Who may see the console's data, and which browser requests may change anything.

The console's data follows the admin API's rule: one of ``[auth] admin_keys`` when any are
configured, loopback clients only when none are. A valid *client* key is told 403 (it is known,
but not an admin), anything else 401. Keys come in the ``Authorization`` header, never the URL.

Cross-site request forgery: a page on another origin can make a browser POST a form to the
gateway, and on a loopback-only admin API that needs no key. A state-changing request that a
browser sent (it carries ``Origin`` or ``Sec-Fetch-Site``) is therefore refused unless it comes
from the gateway's own origin *and* carries ``X-Cortex-Console``, a header no form can send and
that a cross-origin script could only send after a CORS preflight the gateway never grants.
Command-line clients send neither browser header and are not affected.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from cortex_gateway.auth import LOOPBACK
from cortex_kernel.app import error_response
from cortex_kernel.config.schema import AuthSection
from cortex_kernel.errors import CortexError, Forbidden, Unauthorized
from cortex_kernel.keys import KeySet, presented_key

CONSOLE_HEADER = b"x-cortex-console"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
GUARDED_PREFIXES = ("/admin", "/console")


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


def cross_site(scope: Scope) -> str | None:
    """Why this state-changing browser request is refused, or None when it may go on."""
    headers = dict(scope["headers"])
    origin = headers.get(b"origin")
    fetch_site = headers.get(b"sec-fetch-site")
    if origin is None and fetch_site is None:
        return None  # not a browser: curl, the CLI, SDKs
    if fetch_site is not None and fetch_site not in (b"same-origin", b"none"):
        return f"a {fetch_site.decode('latin-1')} request may not change the fleet"
    if origin is not None:
        host = headers.get(b"host", b"")
        if origin.partition(b"://")[2] != host:
            return "a request from another origin may not change the fleet"
    if CONSOLE_HEADER not in headers:
        return "a browser request that changes the fleet must carry X-Cortex-Console"
    return None


class CrossSiteGuard:
    """Pure ASGI middleware: refuses forged state-changing browser requests to the admin API."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] not in SAFE_METHODS
            and scope["path"].startswith(GUARDED_PREFIXES)
            and (why := cross_site(scope)) is not None
        ):
            await error_response(Forbidden(why, code="cross_site"))(scope, receive, send)
            return
        await self.app(scope, receive, send)
