"""The gateway's listeners: its API app and, when a plugin serves one, its metrics app.

One gateway process and each of ``[gateway] workers`` build the same thing; only where the
addresses come from differs (the configuration, or the sockets the supervisor bound for the
worker), so both build it here and cannot drift apart.
"""

from __future__ import annotations

import socket

from cortex_kernel.app import collect_parts, create_app, require_role_part
from cortex_kernel.config.addresses import ListenAddress
from cortex_kernel.kernel import Kernel
from cortex_kernel.serving import Listener


def gateway_listeners(
    kernel: Kernel,
    api: ListenAddress,
    metrics: ListenAddress | None,
    *,
    api_sock: socket.socket | None = None,
    metrics_sock: socket.socket | None = None,
) -> tuple[Listener, Listener | None]:
    """Assemble ``kernel``'s apps: the API listener, and the metrics listener when ``metrics`` is
    given and some part serves on it (``None`` otherwise, so the caller may close its socket).

    :param api_sock: ``api`` already bound and listening (a worker's share of the port); likewise
        ``metrics_sock``. Without them each listener binds its address itself.
    """
    config = kernel.config.value
    limits, server = config.limits, config.gateway.server
    parts = collect_parts(kernel)
    require_role_part(kernel, parts)
    api_listener = Listener(create_app(kernel, parts), api, "gateway", limits, api_sock, server)
    if metrics is None or not any(part.listener == "metrics" for part in parts):
        return api_listener, None
    metrics_app = create_app(kernel, parts, listener="metrics")
    return api_listener, Listener(metrics_app, metrics, "metrics", limits, metrics_sock, server)
