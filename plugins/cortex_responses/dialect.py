"""The :class:`cortex_kernel.dialect.Dialect` this plugin offers the gateway."""

from __future__ import annotations

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from cortex_kernel.catalogue_entry import CatalogueEntry
from cortex_kernel.dialect import Upstream
from cortex_kernel.errors import CortexError
from cortex_responses.errors import error_response
from cortex_responses.routes import ResponsesRoutes
from cortex_responses.settings import ResponsesSettings
from cortex_responses.store import ResponseStore

KEEPALIVE_EVERY_S = 5.0
MAX_BODY_BYTES = 32 * 1024 * 1024


class ResponsesDialect:
    """Serves ``/v1/responses`` (OpenAI's Responses API, the only wire Codex CLI speaks).

    Each dialect object owns its response store, so two kernels in one process (tests) share
    nothing.

    :param settings: the ``[responses]`` table (store size, bytes and TTL).
    :param keepalive_s: the longest silence on a stream before a keep-alive comment is sent.
    :param max_body_bytes: larger requests are answered 413.
    """

    name = "responses"

    def __init__(
        self,
        settings: ResponsesSettings | None = None,
        *,
        keepalive_s: float = KEEPALIVE_EVERY_S,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        settings = settings or ResponsesSettings()
        self.store = ResponseStore(
            max_responses=settings.store_max_responses,
            max_bytes=settings.store_max_mb * 1024 * 1024,
            ttl_s=settings.store_ttl_s,
        )
        self.keepalive_s = keepalive_s
        self.max_body_bytes = max_body_bytes

    def routes(self, upstream: Upstream) -> list[BaseRoute]:
        handlers = ResponsesRoutes(
            upstream, self.store, keepalive_s=self.keepalive_s, max_body_bytes=self.max_body_bytes
        )
        return handlers.routes()

    def claims(self, request: HTTPConnection) -> bool:
        """Calls to ``/v1/responses`` are this dialect's: a refused key is answered in its envelope
        (OpenAI's, with this dialect's wording of an over-long input)."""
        path = request.url.path
        return path == "/v1/responses" or path.startswith("/v1/responses/")

    def render_error(self, error: CortexError) -> Response:
        return error_response(error)

    def render_models(self, request: Request, models: list[CatalogueEntry]) -> Response | None:
        return None  # Responses clients read the gateway's OpenAI listing
