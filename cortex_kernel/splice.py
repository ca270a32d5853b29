"""The ``cortex.splice`` ASGI extension: write a streamed body from a callback, not from a task.

A relayed token normally costs two trips through the event loop: the upstream's bytes arrive in
one protocol's ``data_received``, a future wakes the app's task, and the task's ``await send``
frames and writes them. The fastest Python proxies instead write to the client straight from the
upstream's read callback. A server that can do that offers this extension in
``scope["extensions"]["cortex.splice"]``; an app that finds it (and an unwrapped ``send``, see
:meth:`Splice.serves`) may write body pieces synchronously, with backpressure through callbacks
instead of an awaited drain. A server without it (hypercorn) is served through ``send`` as ever.

The contract, which the httptools server (:mod:`cortex_kernel.http11_exchange`) keeps:

- the response is begun with an ordinary ``await send({"type": "http.response.start", ...})``
  and ended with an ordinary ``http.response.body`` message with ``more_body`` false; between
  the two, :meth:`Splice.write` and ``send`` may be mixed, and bytes go out in call order;
- :meth:`Splice.write` frames the piece as a ``send`` with ``more_body`` true would and writes
  it at once; it never blocks and never raises for a client that has gone (the bytes are
  dropped, as ``send`` drops them);
- when :meth:`Splice.write` returns false the client is slow: the caller stops feeding it and
  waits for the callback given to :meth:`Splice.on_writable`, exactly once;
- the callback given to :meth:`Splice.on_lost` runs once if the client leaves (or the
  connection stops serving it) before the response ends; ``http.disconnect`` from ``receive``
  still arrives as ever, so an app may also keep watching for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from starlette.types import Scope, Send

SPLICE = "cortex.splice"


class Splice(Protocol):
    """A response body that can be written from a callback (see the module's contract)."""

    def serves(self, send: Send) -> bool:
        """Whether ``send`` is this response's own ASGI ``send``, not one a middleware wrapped.

        A middleware that wraps ``send`` (to record the reply, say) must see every byte, so an
        app splices only when this is true and goes through ``send`` otherwise.
        """
        ...

    def write(self, body: bytes) -> bool:
        """Frame and write ``body`` now (a non-empty piece of a body with more to come).

        True while the client keeps up; false once the connection holds more than its
        high-water mark, when the caller should stop until :meth:`on_writable` calls back.
        """
        ...

    def on_writable(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, from the loop, when the client can take more (or has gone)."""
        ...

    def on_lost(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` once if the client goes before the response ends (``None``: none).

        Called at once if it has already gone.
        """
        ...


def splice_of(scope: Scope, send: Send) -> Splice | None:
    """The scope's splice when the server offers one and ``send`` is its own, else ``None``."""
    extensions = scope.get("extensions")
    splice: Splice | None = extensions.get(SPLICE) if extensions else None
    if splice is not None and splice.serves(send):
        return splice
    return None
