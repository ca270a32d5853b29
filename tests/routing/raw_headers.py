"""A JSON POST with whatever request headers a routing test sends, bytes as given.

:func:`tests.daemons.http_json` sends only a bearer token; routing reads session and
request-class headers, and its tests also send header values no client should (5,000 bytes,
raw UTF-8 as latin-1) to show they are ignored, never a 5xx.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def http_json_with_headers(
    url: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, Any, dict[str, str]]:
    """(status, decoded body, headers) of one POST of ``body``; never raises on HTTP errors."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, json.loads(reply.read()), dict(reply.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)
