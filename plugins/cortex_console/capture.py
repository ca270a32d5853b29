"""Optional capture of chat text for the console (``[console] capture = true``; off by default).

Prompts and replies are the users' data, so nothing here runs unless the operator turns it on:
then this middleware keeps the first ``capture_chars`` characters of the last user message and of
the reply of each chat request, in the console's bounded ring and nowhere else.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cortex_console.hub import ConsoleHub

CHAT_PATHS = frozenset({"/v1/chat/completions", "/v1/messages"})


def prompt_of(body: bytes, limit: int) -> tuple[str, str]:
    """(model, the last user message's text), both cut to ``limit``; empty when unreadable."""
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return "", ""
    if not isinstance(decoded, dict):
        return "", ""
    model = str(decoded.get("model", ""))[:limit]
    for message in reversed(decoded.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return model, text_of(message.get("content"))[:limit]
    return model, ""


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def reply_text(raw: bytes, limit: int) -> str:
    """The reply's text from a JSON body or from SSE ``data:`` lines (OpenAI or Anthropic)."""
    pieces: list[str] = []
    lines = [line[5:].strip() for line in raw.split(b"\n") if line.startswith(b"data:")] or [raw]
    for line in lines:
        try:
            event = msgspec.json.decode(line)
        except msgspec.DecodeError:
            continue
        if not isinstance(event, dict):
            continue
        for choice in event.get("choices") or []:
            part = choice.get("delta") or choice.get("message") or {}
            pieces.append(text_of(part.get("content")))
        delta = event.get("delta")
        if isinstance(delta, dict):
            pieces.append(str(delta.get("text", "")))
        pieces.extend(text_of(event.get("content")) for _ in [0] if event.get("type") == "message")
        if sum(map(len, pieces)) >= limit:
            break
    return "".join(pieces)[:limit]


class CaptureMiddleware:
    """Tees a bounded prefix of each chat's request and reply into the hub."""

    def __init__(self, app: ASGIApp, hub: ConsoleHub, limit: int) -> None:
        self.app = app
        self.hub = hub
        self.limit = limit
        self.raw_limit = limit * 8 + 4096  # SSE framing around the text

    @staticmethod
    def watches(path: str) -> bool:
        """The chat paths, relay lanes included."""
        return path in CHAT_PATHS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in CHAT_PATHS:
            await self.app(scope, receive, send)
            return
        request = bytearray()
        reply = bytearray()
        status = 0

        async def tee_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(request) < self.raw_limit * 64:
                request.extend(message.get("body", b""))
            return message

        async def tee_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and len(reply) < self.raw_limit:
                reply.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, tee_receive, tee_send)
        finally:
            model, prompt = prompt_of(bytes(request), self.limit)
            self.hub.capture(
                {
                    "endpoint": scope["path"],
                    "model": model,
                    "status": status,
                    "prompt": prompt,
                    "reply": reply_text(bytes(reply), self.limit),
                }
            )
