"""Choosing the event loop a daemon runs on: asyncio's own, or uvloop where it is installed.

uvloop (libuv, in C) does the loop's own work per wake-up (the poll, the ready queue, socket
reads and writes) several times cheaper than asyncio's selector loop, and the gateway wakes
once per relayed chunk, so it is a dependency on Linux and the gateway's default. asyncio's
loop stays a choice (``event_loop = "asyncio"``, or where uvloop does not build): every
behaviour is the same on either, the daemons the test suite starts run on uvloop, and the
tests that serve in-process run on asyncio's.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

from cortex_kernel.config.errors import ConfigError

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(choice: str) -> LoopFactory | None:
    """The factory for ``choice`` (``auto``, ``asyncio`` or ``uvloop``); None means asyncio's own."""
    if choice == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "event_loop = 'uvloop' but uvloop is not installed",
                key="gateway.event_loop",
                expected="'auto' or 'asyncio', or install cortex-kernel[fast]",
            ) from None
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory
