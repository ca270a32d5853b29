"""The bounded in-memory store behind ``previous_response_id`` and ``GET/DELETE /v1/responses/{id}``.

A stored entry is the response object and the conversation it closed (its input items, the
chained history included, then its output items), so a follow-up that names it can replay the
whole conversation to the neuron. The store lives in one gateway process: a client behind several
gateways must send ``store: false`` (and the full history) or be routed stickily. It is bounded by
count, by bytes (the conversation's JSON size) and by age; the oldest entries go first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from cortex_responses.protocol import Response

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class Stored:
    response: Response
    conversation: list[dict[str, Any]]
    size: int
    expires: float


class ResponseStore:
    """Recent responses by id, least recently stored evicted first.

    :param max_responses: most entries kept.
    :param max_bytes: most conversation bytes kept (an entry larger than this is not stored).
    :param ttl_s: how long an entry stays retrievable.
    """

    def __init__(
        self, *, max_responses: int, max_bytes: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_responses = max_responses
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, Stored] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, response: Response, conversation: list[dict[str, Any]]) -> None:
        size = len(_encode(conversation))
        if size > self.max_bytes:
            return
        self.delete(response.id)
        self._entries[response.id] = Stored(response, conversation, size, self._clock() + self.ttl_s)
        self._bytes += size
        while len(self._entries) > self.max_responses or self._bytes > self.max_bytes:
            _, oldest = self._entries.popitem(last=False)
            self._bytes -= oldest.size

    def get(self, response_id: str) -> Stored | None:
        entry = self._entries.get(response_id)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            self.delete(response_id)
            return None
        return entry

    def delete(self, response_id: str) -> bool:
        entry = self._entries.pop(response_id, None)
        if entry is None:
            return False
        self._bytes -= entry.size
        return True
