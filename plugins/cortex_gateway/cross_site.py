"""Cross-site request forgery on the admin API: which browser requests may change the fleet.

Without ``admin_keys`` the admin API trusts loopback clients, and a browser on the operator's
machine is one: a page on any other origin can make it POST a form to
``/admin/nodes/NAME/drain``. So a state-changing request that a browser sent (it carries
``Origin`` or ``Sec-Fetch-Site``) is refused unless it comes from the gateway's own origin *and*
carries ``X-Cortex-Console``, a header no form can send and that a cross-origin script could only
send after a CORS preflight the gateway never grants (the console sends it). Command-line
clients and SDKs send neither browser header and are not affected. The rule lives in the
gateway, which owns ``/admin``, so it holds whether or not the console plugin is loaded.
"""

from __future__ import annotations

from starlette.types import Scope

ADMIN_HEADER = b"x-cortex-console"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cross_site(scope: Scope) -> str | None:
    """Why this state-changing browser request is refused, or None when it may go on."""
    if scope["method"] in SAFE_METHODS:
        return None
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
    if ADMIN_HEADER not in headers:
        return "a browser request that changes the fleet must carry X-Cortex-Console"
    return None
