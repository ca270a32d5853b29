"""Listen addresses and endpoint URLs, parsed once and checked with messages an operator can act on."""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import urlsplit

LISTEN_FORM = "HOST:PORT, e.g. 0.0.0.0:31313 or [::1]:31313"
ENDPOINT_FORM = "an http:// or https:// URL with a host, e.g. http://gpu-1.internal:13131"

_LISTEN = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.\-]+)):(?P<port>\d{1,5})$")


class ListenAddress(NamedTuple):
    host: str
    port: int

    def bind(self) -> str:
        """The form hypercorn's ``bind`` option takes."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(value: str) -> ListenAddress:
    """Parse ``HOST:PORT``; raise ``ValueError`` naming the expected form otherwise."""
    match = _LISTEN.match(value.strip())
    if not match:
        raise ValueError(f"cannot parse listen address {value!r}")
    port = int(match.group("port"))
    if port > 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return ListenAddress(match.group("v6") or match.group("host"), port)


def check_endpoint(value: str) -> str:
    """Return the endpoint without a trailing slash; raise ``ValueError`` if it is not a URL."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"{value!r} has an invalid port") from exc
    return value.rstrip("/")
