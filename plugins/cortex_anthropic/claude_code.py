"""Claude Code's side requests: the connection warm-up probe and its telemetry batches.

Claude Code sends ``HEAD /api/hello`` to open a connection early and posts
``/api/event_logging/batch`` with its own telemetry, to whatever base URL it is given. Neither
concerns a gateway, but a 404 on every one fills proxy logs and metrics with noise, so they are
answered here as cheaply as possible: the probe with an empty 200, telemetry with 204 and its
body drained unread (up to the dialect's body limit, so the connection stays reusable). Both
are public in the gateway's auth middleware: Claude Code may send them before, or without, the
key it uses for ``/v1/messages``.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

HELLO_PATH = "/api/hello"
EVENT_LOGGING_PATH = "/api/event_logging/batch"


async def hello(request: Request) -> Response:
    return Response(status_code=200)


def event_logging(max_body_bytes: int) -> Route:
    async def discard(request: Request) -> Response:
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_body_bytes:
                    break
        except ClientDisconnect:
            pass
        return Response(status_code=204)

    return Route(EVENT_LOGGING_PATH, discard, methods=["POST"])


def claude_code_routes(max_body_bytes: int) -> list[BaseRoute]:
    """The probe and the telemetry sink (``GET`` answers the probe too; HEAD comes with it)."""
    return [Route(HELLO_PATH, hello, methods=["GET", "HEAD"]), event_logging(max_body_bytes)]
