"""cortex-kernel: one LLM endpoint over a fleet of GPU hosts.

The kernel holds only what every plugin shares: the hook specifications, the plugin-manager
factory, the typed configuration, the error model, the app factory and the CLI. Features live in
plugins found through the ``cortex_kernel`` entry-point group.

The names in ``__all__`` are the public plugin API: what a third-party plugin (hook
implementations, a harness, an evictor, a dialect, a router, an event sink, a configuration
table) imports, all from here. They are resolved lazily, so ``import cortex_kernel`` stays free
of side effects and cheap; the modules they live in are implementation detail and may move.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cortex_kernel.catalogue_entry import CatalogueEntry, ModelLocation
    from cortex_kernel.config.errors import ConfigError
    from cortex_kernel.config.schema import ModelProfile
    from cortex_kernel.config.tables import ConfigTable
    from cortex_kernel.dialect import Dialect, Upstream, UpstreamReply
    from cortex_kernel.errors import (
        BadRequest,
        Conflict,
        CortexError,
        Forbidden,
        NotFound,
        Overloaded,
        PayloadTooLarge,
        Unauthorized,
        UnprocessableEntity,
        UpstreamError,
    )
    from cortex_kernel.events import (
        DefragRestarted,
        DeviceSnapshot,
        Event,
        EventSink,
        FleetPolled,
        ModelLoaded,
        ModelSnapshot,
        ModelUnloaded,
        NodeSnapshot,
        PollFailed,
        RequestFinished,
    )
    from cortex_kernel.eviction import EvictionRequest, Evictor, Resident, Victim
    from cortex_kernel.harness import (
        ContextLengthExceeded,
        Delta,
        Embeddings,
        Harness,
        HarnessContext,
        HarnessSpec,
        ModelDescription,
        PromptTooLarge,
        ToolCallDelta,
        Usage,
    )
    from cortex_kernel.hookspecs import hookimpl
    from cortex_kernel.kernel import AppPart, Kernel, Role
    from cortex_kernel.openai_wire import ChatRequest, CompletionRequest
    from cortex_kernel.routing import Replica, RouteChoice, RouteHints, Router, RoutingFacts
    from cortex_kernel.stash import Stash, StashKey

# Public name -> the module that defines it.
_HOMES = {
    "hookimpl": "cortex_kernel.hookspecs",
    **dict.fromkeys(("AppPart", "Kernel", "Role"), "cortex_kernel.kernel"),
    **dict.fromkeys(("Stash", "StashKey"), "cortex_kernel.stash"),
    **dict.fromkeys(("Dialect", "Upstream", "UpstreamReply"), "cortex_kernel.dialect"),
    **dict.fromkeys(("CatalogueEntry", "ModelLocation"), "cortex_kernel.catalogue_entry"),
    **dict.fromkeys(("EvictionRequest", "Evictor", "Resident", "Victim"), "cortex_kernel.eviction"),
    **dict.fromkeys(("ChatRequest", "CompletionRequest"), "cortex_kernel.openai_wire"),
    **dict.fromkeys(
        ("Replica", "RouteChoice", "RouteHints", "Router", "RoutingFacts"), "cortex_kernel.routing"
    ),
    "ModelProfile": "cortex_kernel.config.schema",
    "ConfigError": "cortex_kernel.config.errors",
    "ConfigTable": "cortex_kernel.config.tables",
    **dict.fromkeys(
        (
            "BadRequest",
            "Conflict",
            "CortexError",
            "Forbidden",
            "NotFound",
            "Overloaded",
            "PayloadTooLarge",
            "Unauthorized",
            "UnprocessableEntity",
            "UpstreamError",
        ),
        "cortex_kernel.errors",
    ),
    **dict.fromkeys(
        (
            "DefragRestarted",
            "DeviceSnapshot",
            "Event",
            "EventSink",
            "FleetPolled",
            "ModelLoaded",
            "ModelSnapshot",
            "ModelUnloaded",
            "NodeSnapshot",
            "PollFailed",
            "RequestFinished",
        ),
        "cortex_kernel.events",
    ),
    **dict.fromkeys(
        (
            "ContextLengthExceeded",
            "Delta",
            "Embeddings",
            "Harness",
            "HarnessContext",
            "HarnessSpec",
            "ModelDescription",
            "PromptTooLarge",
            "ToolCallDelta",
            "Usage",
        ),
        "cortex_kernel.harness",
    ),
}

__all__ = [
    "AppPart",
    "BadRequest",
    "CatalogueEntry",
    "ChatRequest",
    "CompletionRequest",
    "ConfigError",
    "ConfigTable",
    "Conflict",
    "ContextLengthExceeded",
    "CortexError",
    "DefragRestarted",
    "Delta",
    "DeviceSnapshot",
    "Dialect",
    "Embeddings",
    "Event",
    "EventSink",
    "EvictionRequest",
    "Evictor",
    "FleetPolled",
    "Forbidden",
    "Harness",
    "HarnessContext",
    "HarnessSpec",
    "Kernel",
    "ModelDescription",
    "ModelLoaded",
    "ModelLocation",
    "ModelProfile",
    "ModelSnapshot",
    "ModelUnloaded",
    "NodeSnapshot",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PollFailed",
    "PromptTooLarge",
    "Replica",
    "RequestFinished",
    "Resident",
    "Role",
    "RouteChoice",
    "RouteHints",
    "Router",
    "RoutingFacts",
    "Stash",
    "StashKey",
    "ToolCallDelta",
    "Unauthorized",
    "UnprocessableEntity",
    "Upstream",
    "UpstreamError",
    "UpstreamReply",
    "Usage",
    "Victim",
    "__version__",
    "hookimpl",
]


def __getattr__(name: str) -> Any:
    # Resolved lazily so that importing the package stays free of side effects and cheap.
    if name == "__version__":
        from cortex_kernel._version import package_version

        return package_version()
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'cortex_kernel' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
