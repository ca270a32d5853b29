"""Watches the admin API's answers so the console shows what an admin just started, at once.

A load the admin API accepted (202, ``state: loading``) would otherwise reach consoles only with
the next poll, and a tiny model can be ready before that; draining is a gateway-side flag no event
reports. This middleware reads only the short JSON answers of ``/admin`` calls, never a request
to the API, and tells the hub.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cortex_console.hub import ConsoleHub

MAX_ANSWER = 64 * 1024


class AdminTap:
    """Pure ASGI middleware over the admin API's state-changing calls."""

    def __init__(self, app: ASGIApp, hub: ConsoleHub) -> None:
        self.app = app
        self.hub = hub

    @staticmethod
    def watches(path: str) -> bool:
        """Only the admin API (the kernel leaves it out of the relay lanes)."""
        return path.startswith("/admin/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith("/admin/"):
            await self.app(scope, receive, send)
            return
        status = 0
        answer = bytearray()

        async def tee(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and len(answer) < MAX_ANSWER:
                answer.extend(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, tee)
        if 200 <= status < 300:
            try:
                body: Any = msgspec.json.decode(bytes(answer))
            except msgspec.DecodeError:
                return
            if isinstance(body, dict):
                self.hub.admin_answered(scope["path"], status, body)
