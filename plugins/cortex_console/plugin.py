"""Entry point of the console plugin: an event sink and the ``/console`` part for the gateway.

Like the Prometheus plugin, the sink (the hub) is made once per
:class:`~cortex_kernel.kernel.Kernel` and kept in that kernel's stash, so that
``register_event_sinks`` and ``register_app_parts``, called separately, share it and it lives
only as long as that kernel (no module-level state).
"""

from __future__ import annotations

import msgspec
from starlette.middleware import Middleware

from cortex_console.hub import ConsoleHub
from cortex_console.settings import CONSOLE_TABLE
from cortex_kernel.config.schema import CortexConfig
from cortex_kernel.config.tables import ConfigTable
from cortex_kernel.hookspecs import hookimpl
from cortex_kernel.kernel import AppPart, Kernel, Role
from cortex_kernel.route_middleware import RouteMiddleware
from cortex_kernel.stash import StashKey

HUB = StashKey[ConsoleHub]()


def hub_for(kernel: Kernel) -> ConsoleHub:
    """The one hub of ``kernel``'s gateway, made on first use."""
    if HUB not in kernel.stash:
        models = kernel.config.catalogue.models
        pins = {profile.id: list(profile.pinned_on) for profile in models}
        catalogue = [{"id": p.id, "task": p.task, "pinned_on": list(p.pinned_on)} for p in models]
        kernel.stash[HUB] = ConsoleHub(kernel.config.table(CONSOLE_TABLE), pins, catalogue)
    return kernel.stash[HUB]


@hookimpl
def register_config_tables() -> list[ConfigTable[msgspec.Struct]]:
    return [CONSOLE_TABLE]


@hookimpl
def register_event_sinks(role: Role, kernel: Kernel) -> list[ConsoleHub] | None:
    if role != "gateway":
        return None
    return [hub_for(kernel)]


@hookimpl
def register_app_parts(role: Role, kernel: Kernel) -> list[AppPart] | None:
    if role != "gateway":
        return None
    from cortex_console.admin_tap import ADMIN_PREFIX, AdminTap
    from cortex_console.capture import CaptureMiddleware
    from cortex_console.guard import GUARDED_PREFIX, AdminCheck, CrossSiteGuard
    from cortex_console.routes import console_routes

    config: CortexConfig = kernel.config.value
    hub = hub_for(kernel)
    # The guard and the admin tap wrap only the routes they watch: the API's requests (the
    # gateway's hot path) never pass through them. Capture, when on, must see the chats.
    scoped = [
        RouteMiddleware((GUARDED_PREFIX,), Middleware(CrossSiteGuard)),
        RouteMiddleware((ADMIN_PREFIX,), Middleware(AdminTap, hub=hub)),
    ]
    middleware: list[Middleware] = []
    if hub.section.capture:
        middleware.append(Middleware(CaptureMiddleware, hub=hub, limit=hub.section.capture_chars))
    return [
        AppPart(
            name="console",
            routes=console_routes(hub, AdminCheck(config.auth), kernel.drain),
            middleware=middleware,
            route_middleware=scoped,
        )
    ]
