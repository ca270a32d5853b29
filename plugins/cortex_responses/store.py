"""The bounded in-memory store behind ``previous_response_id`` and ``GET/DELETE /v1/responses/{id}``.

A stored entry is the response object and the conversation it closed (its input items, the
chained history included, then its output items), so a follow-up that names it can replay the
whole conversation to the neuron. The store lives in one gateway process: a client behind several
gateways must send ``store: false`` (and the full history) or be routed stickily. It is bounded by
count, by bytes and by age; the oldest entries go first.

An entry is held as its JSON, not as the decoded objects: a conversation of Python dicts and
strings takes five to ten times its JSON size in memory, so a byte bound counted in JSON and kept
as objects let ``store_max_mb`` hold several times what it said. Held as bytes, the bound is the
memory (plus a fixed cost per entry, :data:`ENTRY_OVERHEAD`); the price is a decode when a
follow-up or a ``GET`` reads an entry, which is rare next to the generation it precedes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from cortex_responses.protocol import Response

_decode_response = msgspec.json.Decoder(Response).decode
_decode_conversation = msgspec.json.Decoder(list[dict[str, Any]]).decode

ENTRY_OVERHEAD = 256
"""Bytes counted per entry beyond its JSON: the entry, its two ``bytes`` objects, its id and
the ordered dict's slot (about 220 bytes measured with ``tracemalloc`` on CPython 3.11)."""


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored response and the conversation it closed, as JSON (decoded on each read)."""

    response_json: bytes
    conversation_json: bytes
    expires: float

    @property
    def size(self) -> int:
        """The bytes this entry counts against the store's bound."""
        return len(self.response_json) + len(self.conversation_json) + ENTRY_OVERHEAD

    @property
    def response(self) -> Response:
        return _decode_response(self.response_json)

    @property
    def conversation(self) -> list[dict[str, Any]]:
        return _decode_conversation(self.conversation_json)


class ResponseStore:
    """Recent responses by id, least recently stored evicted first.

    :param max_responses: most entries kept.
    :param max_bytes: most bytes kept, each entry counted as its JSON and :data:`ENTRY_OVERHEAD`
        (an entry larger than this is not stored).
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
        self._encoder = msgspec.json.Encoder()
        self._buffer = bytearray()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, response: Response, conversation: list[dict[str, Any]]) -> None:
        entry = Stored(self._json(response), self._json(conversation), self._clock() + self.ttl_s)
        size = entry.size
        if size > self.max_bytes:
            return
        self.delete(response.id)
        self._entries[response.id] = entry
        self._bytes += size
        while len(self._entries) > self.max_responses or self._bytes > self.max_bytes:
            _, oldest = self._entries.popitem(last=False)
            self._bytes -= oldest.size

    def _json(self, value: object) -> bytes:
        """``value`` as JSON in a ``bytes`` of exactly its length.

        ``Encoder.encode`` returns its growth buffer, up to a fifth larger than the JSON; an
        entry kept for minutes should not carry that slack, so encode into a reused buffer and
        copy out exactly what was written.
        """
        self._encoder.encode_into(value, self._buffer)
        return bytes(self._buffer)

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
