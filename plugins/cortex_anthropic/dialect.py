"""The :class:`cortex_kernel.dialect.Dialect` this plugin offers the gateway."""

from __future__ import annotations

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from cortex_anthropic.errors import error_response, new_request_id
from cortex_anthropic.models_view import model_page, wants_anthropic_shape
from cortex_anthropic.routes import AnthropicRoutes, json_response
from cortex_kernel.catalogue_entry import CatalogueEntry
from cortex_kernel.dialect import Upstream
from cortex_kernel.errors import CortexError

PING_EVERY_S = 5.0
MAX_BODY_BYTES = 32 * 1024 * 1024  # the real API's limit for Messages and count_tokens


class AnthropicDialect:
    """Serves ``/v1/messages``, ``/v1/messages/count_tokens`` and ``/v1/models/{id}``, and the
    Anthropic shape of ``/v1/models``. Client keys are the gateway's (``[auth]``); it asks
    :meth:`claims` to refuse a key in this dialect's envelope.

    :param ping_every_s: the longest silence on a stream before a ``ping`` is sent.
    :param max_body_bytes: larger requests are answered 413 ``request_too_large``.
    """

    name = "anthropic"

    def __init__(
        self,
        *,
        ping_every_s: float = PING_EVERY_S,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.ping_every_s = ping_every_s
        self.max_body_bytes = max_body_bytes

    def routes(self, upstream: Upstream) -> list[BaseRoute]:
        handlers = AnthropicRoutes(
            upstream,
            ping_every_s=self.ping_every_s,
            max_body_bytes=self.max_body_bytes,
        )
        return handlers.routes()

    def render_models(self, request: Request, models: list[CatalogueEntry]) -> Response | None:
        if not wants_anthropic_shape(request):
            return None
        request_id = new_request_id()
        try:
            return json_response(model_page(models, dict(request.query_params)), request_id)
        except CortexError as exc:
            return error_response(exc, request_id)

    def claims(self, request: HTTPConnection) -> bool:
        """Anthropic clients call ``/v1/messages`` or announce themselves with ``anthropic-version``."""
        return request.url.path.startswith("/v1/messages") or "anthropic-version" in request.headers

    def render_error(self, error: CortexError) -> Response:
        return error_response(error, new_request_id())
