"""A neuron's JSON reply as the gateway's aiohttp session hands it over, for the in-process
placement tests whose neuron doubles stand in for that session."""

from __future__ import annotations

import json
from typing import Any


class ReplyDouble:
    """Stands in for an aiohttp response: a status, no headers, and a JSON body read once or more."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.headers: dict[str, str] = {}
        self._raw = json.dumps(body).encode()

    async def read(self) -> bytes:
        return self._raw

    async def text(self) -> str:
        return self._raw.decode()
