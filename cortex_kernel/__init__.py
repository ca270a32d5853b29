"""cortex-kernel: one LLM endpoint over a fleet of GPU hosts.

The kernel holds only what every plugin shares: the hook specifications, the plugin-manager
factory, the typed configuration, the error model, the app factory and the CLI. Features live in
plugins found through the ``cortex_kernel`` entry-point group.
"""

from __future__ import annotations

from typing import Any

__all__ = ["__version__", "hookimpl"]


def __getattr__(name: str) -> Any:
    # Resolved lazily so that importing the package stays free of side effects and cheap.
    if name == "__version__":
        from cortex_kernel._version import package_version

        return package_version()
    if name == "hookimpl":
        from cortex_kernel.hookspecs import hookimpl

        return hookimpl
    raise AttributeError(name)
