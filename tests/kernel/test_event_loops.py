"""``[gateway] event_loop``: uvloop where installed unless asked otherwise, a clear error when asked
for and missing."""

from __future__ import annotations

import asyncio
import gc
import importlib
import types

import pytest

from cortex_kernel.config.errors import ConfigError
from cortex_kernel.event_loops import loop_factory
from cortex_kernel.serving import run_until_signalled


def _without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake(name: str, package: str | None = None) -> types.ModuleType:
        if name == "uvloop":
            raise ImportError("No module named 'uvloop'")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", fake)


def test_asyncio_is_asyncios_own_loop() -> None:
    assert loop_factory("asyncio") is None


def test_auto_without_uvloop_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_uvloop(monkeypatch)
    assert loop_factory("auto") is None


def test_uvloop_asked_for_and_missing_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_uvloop(monkeypatch)
    with pytest.raises(ConfigError, match=r"gateway\.event_loop.*not installed"):
        loop_factory("uvloop")


def test_auto_with_uvloop_runs_on_it() -> None:
    uvloop = pytest.importorskip("uvloop")
    assert loop_factory("auto") is uvloop.new_event_loop
    seen: list[type[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()))

    try:
        run_until_signalled(main(), loop_factory("uvloop"))
    finally:
        gc.unfreeze()  # run_until_signalled leaves its objects to the exit (tests/kernel/test_daemon_exit.py)
    assert seen == [uvloop.Loop]
