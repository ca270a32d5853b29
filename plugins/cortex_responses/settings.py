"""The Responses dialect's own configuration table, ``[responses]`` in ``cortex.toml``."""

from __future__ import annotations

from typing import Annotated

import msgspec

from cortex_kernel.config.tables import ConfigTable


class ResponsesSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """``[responses]``: the bounded in-memory store behind ``previous_response_id``.

    At most ``store_max_responses`` responses and ``store_max_mb`` MiB are kept, each for
    ``store_ttl_s`` seconds; the oldest go first (docs/configuration.md).
    """

    store_max_responses: Annotated[int, msgspec.Meta(ge=1)] = 1024
    store_max_mb: Annotated[int, msgspec.Meta(ge=1)] = 256
    store_ttl_s: Annotated[float, msgspec.Meta(gt=0)] = 3600.0


RESPONSES_TABLE = ConfigTable("responses", ResponsesSettings)
