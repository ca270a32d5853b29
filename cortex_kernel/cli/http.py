"""A small synchronous HTTP client for the CLI's fleet commands (stdlib only, clear errors)."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from typing import Any

import click


def request_json(
    method: str, url: str, body: Any | None = None, *, token: str | None = None, timeout: float = 10.0
) -> Any:
    """Send ``body`` as JSON and return the decoded reply; raise ``ClickException`` on failure."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("accept", "application/json")
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError, KeyError, TypeError):
            detail = json.loads(detail)["error"]["message"]
        raise click.ClickException(f"{method} {url}: HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise click.ClickException(f"cannot reach {url}: {reason}") from exc
