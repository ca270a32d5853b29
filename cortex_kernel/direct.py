"""Direct routes: a lane's requests answered from the server's protocol callbacks, no ASGI task.

An ASGI request costs the httptools server a task, its scope's trip through the lane's
middleware, ``receive`` and every ``await send``: measured on the gateway's relay, 13-16 % of its
CPU per request and per stream (issue #17, ``docs/performance.md``). The fastest Python proxies
instead answer from the callbacks that read the sockets. A part may therefore pair a lane with a
*direct route*: a plain function the server calls, once the whole request is in, with a
:class:`DirectExchange`. It either takes the request (returns true, and answers it later from
whatever callbacks it likes) or declines (returns false), and then the lane serves it as ever.

What the server guarantees, so a route can decline anything it does not handle itself:

- it is offered only requests to its lane's ``(method, path)`` with a ``Content-Length`` body of
  at most :data:`MAX_DIRECT_BODY` bytes and no ``Expect: 100-continue``, on HTTP/1.x; the rest
  go to the lane;
- it is offered the request once its body is complete, never mid-upload, and in order among
  pipelined requests;
- a route is kept only where no other part's middleware watches its path (a console capture,
  say): the owning part's own middleware (its auth, its routing headers) is the route's to
  honour, by doing the same or by declining;
- a request it takes may still be handed to the lane with :meth:`DirectExchange.to_app` until
  the response has begun (a first attempt that failed before any byte came back): the lane then
  serves it from the start, body included;
- the ``hypercorn`` server has no direct routes; its lanes serve everything.

The response is written with the :class:`~cortex_kernel.splice.Splice` calls (``write``,
``on_writable``, ``on_lost``) between :meth:`DirectExchange.start_response` and
:meth:`DirectExchange.finish_response`, framed exactly as an ASGI response with the same status,
headers and body would be. A route must never raise: the server logs an exception from the offer
and hands the request to the lane.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from cortex_kernel.splice import Splice

# The largest body a direct route is offered (a request over it goes to the lane): what the
# server buffers before it stops reading a connection, so a held request never stalls its reading.
MAX_DIRECT_BODY = 256 * 1024


class DirectExchange(Splice, Protocol):
    """One request offered to a direct route, and the response the route writes for it."""

    @property
    def scope(self) -> dict[str, Any]:
        """The request's ASGI scope, as its lane would see it; what a route puts in its
        ``state`` before :meth:`to_app` reaches the lane (do not keep the scope)."""
        ...

    def request_body(self) -> bytes:
        """The whole request body."""
        ...

    def start_response(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """Begin the response, as ``http.response.start`` would (the head goes out with the
        first body bytes). Raises ``ResponseError`` for a header no response may carry."""
        ...

    def finish_response(self, body: bytes = b"") -> None:
        """End the response with ``body`` (its last bytes, or all of them), as an
        ``http.response.body`` message with ``more_body`` false would."""
        ...

    def to_app(self) -> None:
        """Hand the request to its lane instead, before the response has begun."""
        ...

    def abort_response(self) -> None:
        """End a begun response that cannot be finished: the connection is closed."""
        ...


DirectRoute = Callable[[DirectExchange], bool]
