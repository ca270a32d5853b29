"""The console's routes: the page and its assets (no data), its state and its event stream.

The page, script and stylesheet are files shipped in this package, read once at start-up and
served with a strict Content-Security-Policy: scripts and styles only from this origin, no inline
code, no framing, connections only back to the gateway. The data routes answer admins only
(:mod:`cortex_console.guard`).
"""

from __future__ import annotations

import asyncio
import contextlib
from importlib import resources

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from cortex_console.guard import AdminCheck
from cortex_console.hub import ConsoleHub, Subscriber
from cortex_kernel.app import error_response
from cortex_kernel.drain import Drain

KEEPALIVE_S = 15.0
ASSETS = {"console.js": "text/javascript", "console.css": "text/css", "favicon.svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


def read_asset(name: str) -> bytes:
    return resources.files("cortex_console").joinpath("static", name).read_bytes()


class EventStream:
    """``GET /console/api/stream``: server-sent events until the client leaves or falls behind.

    A raw ASGI app rather than a streaming response, so that a client which stops reading (its
    socket buffer full, our write blocked) can be dropped: the writer is a task we cancel when
    the hub marks the subscriber gone, and returning ends the response and the connection. The
    same happens when the gateway starts draining.
    """

    def __init__(self, hub: ConsoleHub, check: AdminCheck, drain: Drain) -> None:
        self.hub = hub
        self.check = check
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = self.check.verdict(scope)
        if error is not None:
            response = error_response(error)
            response.headers.update(SECURITY_HEADERS)
            await response(scope, receive, send)
            return
        headers = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
        headers += [(b"content-type", b"text/event-stream"), (b"x-accel-buffering", b"no")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        subscriber = self.hub.subscribe()
        loop = asyncio.get_running_loop()
        tasks = [
            loop.create_task(self._write(subscriber, send)),
            loop.create_task(_disconnected(receive)),
            loop.create_task(subscriber.gone.wait()),
            # A console carries no user's work: it must not hold a shutdown for the whole grace.
            loop.create_task(self.drain.draining.wait()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.hub.unsubscribe(subscriber)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await task
        if self.drain.active and not subscriber.gone.is_set():
            # A clean end the page can tell from a cut; bounded, as the client may be stuck too.
            with contextlib.suppress(TimeoutError, OSError):
                async with asyncio.timeout(1.0):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _write(self, subscriber: Subscriber, send: Send) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11, wait_for returns the item when it was
        # cancelled just as the item came (a console that leaves at once, as its snapshot is
        # taken, or just as a batch arrives), so this task ran on, writing keep-alives to a
        # closed socket and holding the gateway's shutdown for the whole grace.
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE_S):
                    chunk = await subscriber.queue.get()
            except TimeoutError:
                chunk = b": keep-alive\n\n"
            await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def console_routes(hub: ConsoleHub, check: AdminCheck, drain: Drain) -> list[BaseRoute]:
    page = read_asset("index.html")
    assets = {name: (read_asset(name), media) for name, media in ASSETS.items()}

    async def index(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    async def asset(request: Request) -> Response:
        found = assets.get(request.path_params["name"])
        if found is None:
            return Response(b"not found", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS)
        return Response(found[0], media_type=found[1], headers=SECURITY_HEADERS)

    async def state(request: Request) -> Response:
        error = check.verdict(request.scope)
        response = error_response(error) if error else _json(hub.snapshot())
        response.headers.update(SECURITY_HEADERS)
        return response

    return [
        Route("/console", index, methods=["GET"]),
        Route("/console/static/{name}", asset, methods=["GET"]),
        Route("/console/api/state", state, methods=["GET"]),
        Route("/console/api/stream", EventStream(hub, check, drain), methods=["GET"]),
    ]


def _json(body: object) -> Response:
    return Response(msgspec.json.encode(body), media_type="application/json")
