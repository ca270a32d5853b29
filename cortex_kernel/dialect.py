"""The dialect seam: a plugin that speaks another API in front of the neurons' OpenAI chat.

The gateway owns routing (placement, cold loads, retries) and the connection to neurons; a
dialect owns its wire format. The gateway hands each dialect an :class:`Upstream` when it
mounts the dialect's routes, so a dialect translates its request to OpenAI chat, calls
:meth:`Upstream.open`, and translates the neuron's reply (or SSE stream) back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from cortex_kernel.catalogue_entry import CatalogueEntry
from cortex_kernel.errors import CortexError

if TYPE_CHECKING:
    from cortex_kernel.routing import RouteHints


@runtime_checkable
class UpstreamReply(Protocol):
    """An open reply from a neuron: status and headers now, the body as it arrives."""

    @property
    def status(self) -> int:
        """The neuron's HTTP status."""
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """The neuron's response headers, hop-by-hop ones removed."""
        ...

    @property
    def node(self) -> str:
        """The node that answered."""
        ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (SSE bytes for a streamed request)."""
        ...

    async def read(self) -> bytes:
        """The whole body."""
        ...

    def close(self) -> None:
        """Drop the connection; the neuron stops generating."""
        ...


@runtime_checkable
class Upstream(Protocol):
    """What the gateway offers a dialect."""

    def resolve(self, model: str) -> str:
        """The concrete model id for ``model`` (aliases resolved)."""
        ...

    async def open(
        self, path: str, model: str, body: bytes, hints: RouteHints | None = None
    ) -> UpstreamReply:
        """Route ``body`` for ``model`` to a neuron and POST it to ``path`` (e.g.
        ``/v1/chat/completions``), cold-loading the model if needed. ``hints`` is what the
        dialect knows of the request for the router (a session key such as Anthropic
        ``metadata.user_id``); the gateway adds its configured session and class headers. Raises
        :class:`cortex_kernel.errors.CortexError` when no node can serve (404 unknown model,
        503 with ``retry_after`` when busy or loading, 502 when nodes fail)."""
        ...

    def models(self) -> list[CatalogueEntry]:
        """The merged catalogue, as the OpenAI ``/v1/models`` entries (with our fields)."""
        ...

    def model(self, model: str) -> CatalogueEntry | None:
        """The catalogue entry of one model id or alias (``None`` if unknown), without building
        the whole catalogue: what a request that names a model needs."""
        ...


@runtime_checkable
class Dialect(Protocol):
    """An API dialect served by the gateway."""

    name: str

    def routes(self, upstream: Upstream) -> list[BaseRoute]:
        """Routes to mount on the gateway; called once at start-up."""
        ...

    def render_models(self, request: Request, models: list[CatalogueEntry]) -> Response | None:
        """Answer ``GET /v1/models`` in this dialect's shape when ``request`` asks for it
        (e.g. an ``anthropic-version`` header), else ``None``."""
        ...

    def claims(self, request: HTTPConnection) -> bool:
        """Whether ``request`` speaks this dialect (its path, or a header its clients send).

        The gateway asks before any route runs, to answer a refused key in the caller's own
        envelope; only the headers and path are there, never the body. Must be cheap.
        """
        ...

    def render_error(self, error: CortexError) -> Response:
        """``error`` as this dialect's error response (status, envelope, retry headers), for
        errors raised before the dialect's own routes run (authentication)."""
        ...
