"""What both HTTP/1.1 servers say and read at a connection's edge, written once.

The kernel serves HTTP/1.1 on hypercorn's protocol (:mod:`cortex_kernel.connection`) or on
httptools (:mod:`cortex_kernel.http11`), and a client must meet the same refusals, word for word,
on either: so each request a server answers itself, before the app sees it, is built here, as is
the peer's address that both put in the ASGI scope.

Each refusal is a fresh :class:`Refused` per call, never a shared instance: an exception raised
again keeps growing the traceback it carries.
"""

from __future__ import annotations

from http import HTTPStatus

from cortex_kernel.errors import CortexError, openai_error_body


class Refused(Exception):
    """A request the connection answers itself, in the OpenAI envelope, before closing."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code

    def response(self) -> bytes:
        error = CortexError(self.message, status=self.status, type="invalid_request_error", code=self.code)
        body = openai_error_body(error)
        head = (
            f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        return head.encode() + body


def both_framings() -> Refused:
    """``Content-Length`` beside ``Transfer-Encoding``: two parsers may frame it differently."""
    return Refused(400, "a request may not carry both Content-Length and Transfer-Encoding", "bad_framing")


def chunked_on_http10() -> Refused:
    """A chunked HTTP/1.0 request, which an HTTP/1.0 proxy in front would not frame as chunked."""
    return Refused(400, "Transfer-Encoding is not allowed on an HTTP/1.0 request", "bad_framing")


def http2_preface() -> Refused:
    """HTTP/2 spoken at an HTTP/1.1 server (the h2c preface, when h2c is not allowed)."""
    return Refused(505, "HTTP/2 is not served here; use HTTP/1.1", "http_version_not_supported")


def head_too_large() -> Refused:
    """A request head past the 64 KiB both servers read."""
    return Refused(431, "the request head is larger than 64 KiB", "header_too_large")


def unparsable() -> Refused:
    """A request the parser failed on in a way it should not have: not the client's words to quote."""
    return Refused(400, "the request could not be parsed", "bad_request")


def timed_out(what: str, bound_s: float) -> Refused:
    """``what`` (the request head or body) missed its ``[limits]`` deadline of ``bound_s``."""
    return Refused(408, f"the {what} did not arrive within {bound_s:g} s", "request_timeout")


def socket_address(address: object) -> tuple[str, int] | None:
    """An IP socket's address as the ASGI scope's ``client``/``server`` pair; None for any other.

    Host and port of an IPv4 pair or of IPv6's 4-tuple, as hypercorn's ``parse_socket_addr``
    gives; a Unix socket's path (a string) has no such pair.
    """
    if isinstance(address, tuple) and len(address) >= 2:
        return (str(address[0]), int(address[1]))
    return None
