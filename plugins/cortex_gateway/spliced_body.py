"""A relayed body written through the server's splice, from the neuron connection's read callback.

The sink :meth:`cortex_gateway.neuron_http.NeuronResponse.divert` calls once per read of the
neuron's connection: the tap times the piece, the splice frames and writes it to the client at
once, and when the client's connection is above its high-water mark the neuron's reading pauses
until the client drains (the splice's ``on_writable``), so a slow client never makes the gateway
buffer more than one read beyond the client's own transport buffer.
"""

from __future__ import annotations

from collections.abc import Callable

from cortex_gateway.neuron_http import NeuronResponse
from cortex_kernel.splice import Splice


class SplicedBody:
    """The per-read sink of one spliced relay; ``last`` is the latest piece written."""

    __slots__ = ("_resume", "_splice", "_tap", "last")

    def __init__(self, splice: Splice, tap: Callable[[bytes], None], upstream: NeuronResponse) -> None:
        self._splice = splice
        self._tap = tap
        self._resume = upstream.resume_diverted
        self.last = b"\n\n"  # nothing relayed yet ends on a frame boundary

    def take(self, piece: bytes) -> bool:
        """Tap and write ``piece``; false (reading pauses) when the client is behind."""
        self._tap(piece)
        self.last = piece
        if self._splice.write(piece):
            return True
        self._splice.on_writable(self._resume)
        return False
