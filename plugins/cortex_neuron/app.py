"""Assembling the neuron: registry, API routes, token check and the daemon's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import platformdirs
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from cortex_kernel.app import error_response
from cortex_kernel.config.schema import NeuronConfig
from cortex_kernel.errors import Unauthorized
from cortex_kernel.kernel import AppPart, Kernel
from cortex_neuron.api import NeuronAPI
from cortex_neuron.registry import InlineTrust, ModelRegistry

PUBLIC_PATHS = frozenset({"/health", "/health/live", "/health/ready"})


class TokenAuth:
    """Require ``Authorization: Bearer TOKEN`` on every route but the health probes.

    The scheme is case-insensitive (RFC 9110 section 11.1), as the gateway's check is; the
    token is compared in constant time.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        presented = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, credentials = presented.strip().partition(b" ")
        matches = hmac.compare_digest(credentials.strip(), self.expected)
        if scheme.lower() != b"bearer" or not matches:
            response = error_response(Unauthorized("missing or wrong neuron token"))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def build_registry(kernel: Kernel) -> ModelRegistry:
    config: NeuronConfig = kernel.config.value
    specs = [spec for result in kernel.pm.hook.register_harnesses() if result for spec in result]
    cache_dir = Path(config.cache_dir or platformdirs.user_cache_dir("cortex")).expanduser() / "models"
    return ModelRegistry(
        specs=specs,
        catalogue=kernel.config.catalogue,
        admission=config.admission,
        allow_models=config.allow_models,
        model_roots=[Path(root).expanduser() for root in config.model_roots],
        cache_dir=cache_dir,
        harness_options=config.harnesses,
        trust=InlineTrust(
            allow_inline_remote_code=config.allow_inline_remote_code,
            allow_inline_cache_dirs=config.allow_inline_cache_dirs,
        ),
        memory_budget_bytes=config.memory_budget_mb * 1024 * 1024 if config.memory_budget_mb else None,
        host_memory_budget_bytes=(
            config.host_memory_budget_mb * 1024 * 1024 if config.host_memory_budget_mb else None
        ),
    )


def neuron_part(kernel: Kernel) -> AppPart:
    """The neuron API as an app part, with its lifespan and token check."""
    config: NeuronConfig = kernel.config.value
    registry = build_registry(kernel)
    api = NeuronAPI(config, registry, kernel.drain)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        activation = loop.create_task(api.activate(), name="activation")
        ender = loop.create_task(api.end_streams_at_cutoff(), name="drain-cutoff")
        try:
            yield
        finally:
            for task in (activation, ender):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await registry.shutdown(config.shutdown_timeout_s)

    middleware = [Middleware(TokenAuth, token=config.token)] if config.token else []
    return AppPart(name="neuron", routes=api.routes(), middleware=middleware, lifespan=lifespan)
