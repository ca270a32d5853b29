"""Reading a request's routing hints: session headers, body keys, a prefix fingerprint, its class.

The order is the documented one: the first configured session header a request carries, then
OpenAI ``prompt_cache_key``, then the OpenAI ``user`` or Anthropic ``metadata.user_id`` a
dialect passes as ``RouteHints.session_key``, then a fingerprint of the prompt's leading prefix.
A value that is not a short printable ASCII string is ignored and the next source is used: a
routing hint is never a reason to refuse a request.

Headers reach dialects' requests too, which only hand the gateway an OpenAI body and
``RouteHints``: a small ASGI middleware reads the configured headers once per request into a
context variable that :meth:`HintReader.resolve` consults, so a dialect needs no configuration.
"""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Awaitable, Iterable

import msgspec
from starlette.types import ASGIApp, Receive, Scope, Send

from cortex_kernel.node_wire import REQUEST_CLASS_HEADER
from cortex_kernel.routing import REQUEST_CLASSES, RouteHints

MAX_KEY_BYTES = 256  # longer session values are not keys anyone sends; ignore them

# The header hints of the request being handled (set by RoutingHeaders, read by HintReader).
_header_hints: contextvars.ContextVar[RouteHints | None] = contextvars.ContextVar(
    "cortex_route_header_hints", default=None
)


def usable_key(value: str | None) -> str | None:
    """``value`` when it can serve as a routing key: non-empty, printable ASCII, bounded."""
    if not value or len(value) > MAX_KEY_BYTES or not value.isascii() or not value.isprintable():
        return None
    return value


def request_class(value: str | None) -> str | None:
    """The request class ``value`` names, or ``None`` for anything unknown."""
    if value is None:
        return None
    value = value.strip().lower()
    return value if value in REQUEST_CLASSES else None


class RoutingHeaders:
    """Pure ASGI middleware: the configured session and request-class headers as route hints."""

    def __init__(self, app: ASGIApp, *, session_headers: Iterable[str], class_header: str) -> None:
        self.app = app
        self.session = [h.lower().encode("latin-1") for h in session_headers]
        # Our own header first (any client may send it), then the configured client's.
        self.klass = [REQUEST_CLASS_HEADER.encode("latin-1"), class_header.lower().encode("latin-1")]
        self.wanted = frozenset((*self.session, *self.klass))

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The app's own awaitable when the request carries no hint header (a tail call: no frame
        of this middleware stays in the request's await chain); else one that sets the hints."""
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        found: dict[bytes, bytes] = {}
        wanted = self.wanted
        for name, value in scope["headers"]:
            if name in wanted and name not in found:
                found[name] = value
        session = None
        for name in self.session:
            if name in found:
                session = usable_key(found[name].decode("latin-1").strip())
                if session is not None:
                    break
        klass = None
        for name in self.klass:
            if name in found:
                klass = request_class(found[name].decode("latin-1"))
                if klass is not None:
                    break
        if session is None and klass is None:
            return self.app(scope, receive, send)
        return self._hinted(RouteHints(session_key=session, request_class=klass), scope, receive, send)

    async def _hinted(self, hints: RouteHints, scope: Scope, receive: Receive, send: Send) -> None:
        token = _header_hints.set(hints)
        try:
            await self.app(scope, receive, send)
        finally:
            _header_hints.reset(token)


class _Lead(msgspec.Struct):
    """The fields of a chat message the fingerprint needs to find the end of the leading prefix."""

    role: str = ""


class _Prompt(msgspec.Struct):
    """The parts of an OpenAI chat body a prefix fingerprint covers (values skipped, not parsed)."""

    messages: msgspec.Raw = msgspec.Raw(b"")
    tools: msgspec.Raw = msgspec.Raw(b"")


_prompt_decoder = msgspec.json.Decoder(_Prompt)
_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_lead_decoder = msgspec.json.Decoder(_Lead)
_str_decoder = msgspec.json.Decoder(str)


def fingerprint(messages: msgspec.Raw, tools: msgspec.Raw, limit: int) -> str | None:
    """A digest of the prompt's leading prefix: the tools and the messages up to and including
    the first user message, ``limit`` bytes of each at most. Later turns of a conversation share
    it with the first, so they can be routed to the cache the first one left."""
    if not messages:
        return None
    try:
        items = _list_decoder.decode(messages)
    except (msgspec.DecodeError, RecursionError):
        return None
    digest = hashlib.blake2b(digest_size=16)
    digest.update(bytes(tools)[:limit])
    left = limit
    for item in items:
        piece = bytes(item)[:left]
        digest.update(piece)
        left -= len(piece)
        try:
            role = _lead_decoder.decode(item).role
        except (msgspec.DecodeError, RecursionError):
            role = ""
        if role == "user" or left <= 0:
            break
    return "fp:" + digest.hexdigest() if items else None


def body_key(raw: msgspec.Raw) -> str | None:
    """A string-valued body field (``prompt_cache_key``, ``user``) as a key, or ``None``."""
    if not raw:
        return None
    try:
        return usable_key(_str_decoder.decode(raw))
    except (msgspec.DecodeError, RecursionError):
        return None


class HintReader:
    """Resolves one request's hints into what the router is given."""

    def __init__(self, fingerprint_bytes: int) -> None:
        self.fingerprint_bytes = fingerprint_bytes

    def header_hints(self) -> RouteHints | None:
        return _header_hints.get()

    def resolve(self, hints: RouteHints | None, body: bytes | None = None) -> RouteHints:
        """The request's session key and class in the documented order; a fingerprint of
        ``body`` (an OpenAI chat body) only when it carries no key at all."""
        headers = _header_hints.get()
        hints = hints or RouteHints()
        key = (
            (headers.session_key if headers else None)
            or usable_key(hints.prompt_cache_key)
            or usable_key(hints.session_key)
        )
        klass = (headers.request_class if headers else None) or request_class(hints.request_class)
        print_ = hints.fingerprint
        if key is None and print_ is None and body is not None:
            try:
                prompt = _prompt_decoder.decode(body)
            except (msgspec.DecodeError, RecursionError):
                prompt = None
            if prompt is not None:
                print_ = fingerprint(prompt.messages, prompt.tools, self.fingerprint_bytes)
        return RouteHints(session_key=key, request_class=klass, fingerprint=print_ or None)
