"""The console's own configuration table, ``[console]`` in ``cortex.toml``."""

from __future__ import annotations

from typing import Annotated

import msgspec

from cortex_kernel.config.tables import ConfigTable

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]


class ConsoleSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """``[console]``: the operator console's memory bounds and whether it keeps message text.

    ``capture`` keeps the first characters of each chat's prompt and reply so operators can see
    what a request was; it is off by default because those texts are the users' data.
    """

    capture: bool = False
    capture_chars: PositiveInt = 500
    recent_requests: PositiveInt = 200
    activity_events: PositiveInt = 200


CONSOLE_TABLE = ConfigTable("console", ConsoleSettings)
