"""The real Claude Code CLI (``@anthropic-ai/claude-code``, pinned by ``scripts/claude-code-env``)
against a real gateway and neuron with the tiny model, client keys required.

A recording proxy sits between Claude Code and the gateway, so the test sees what Claude Code
asks and what the gateway answers: its warm-up ``HEAD /api/hello`` (sent without a key),
``GET /v1/models?limit=1000`` with ``CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1`` (it keeps the
ids containing "claude"), and the streamed ``POST /v1/messages?beta=true``. The tiny model's
answer is noise; ``--tools ""``, ``--system-prompt`` and ``CLAUDE_CODE_MAX_OUTPUT_TOKENS`` keep
the prompt and the reply small enough for it.

Claude Code 2.1.332 sends, in this order: ``HEAD /api/hello`` (no key), ``GET
/v1/models?limit=1000`` (with ``anthropic-version`` and the key), then ``POST
/v1/messages?beta=true``; it sent no ``/api/event_logging/batch`` in ``-p`` mode.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.anthropic.headers import ANTHROPIC
from tests.daemons import Daemon
from tests.loopback import LoopbackServer
from tests.pinned_cli import pinned_cli

pytestmark = pytest.mark.slow

CLIENT_KEY = "cortex-test-client-key"
ALIAS = "claude-gateway-coder"


def claude_binary() -> str:
    """``$CORTEX_CLAUDE_CODE`` (set by ``make unit``) or ``scripts/claude-code-env``; else skip."""
    return pinned_cli("CORTEX_CLAUDE_CODE", "claude-code-env", "Claude Code")


@dataclass
class Exchange:
    method: str
    path: str
    keyed: bool
    status: int
    body: bytes


class RecordingProxy:
    """Forwards every request to ``upstream`` and records it with the answer (bodies buffered)."""

    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self.exchanges: list[Exchange] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "accept-encoding")
                }
                assert target.hostname is not None
                upstream_conn = http.client.HTTPConnection(target.hostname, target.port, timeout=240)
                try:
                    upstream_conn.request(self.command, self.path, body=body, headers=headers)
                    reply = upstream_conn.getresponse()
                    payload = reply.read()
                finally:
                    upstream_conn.close()
                keyed = "authorization" in {k.lower() for k in self.headers} or "x-api-key" in self.headers
                proxy.exchanges.append(Exchange(self.command, self.path, keyed, reply.status, payload))
                self.send_response(reply.status)
                for name, value in reply.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_HEAD = _forward

        self.server = LoopbackServer(Handler, "claude-proxy")

    @property
    def url(self) -> str:
        return self.server.origin

    def __enter__(self) -> RecordingProxy:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


@pytest.fixture
def keyed_gateway(start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon]) -> Daemon:
    digest = "sha256:" + hashlib.sha256(CLIENT_KEY.encode()).hexdigest()
    return start_gateway(
        {"n1": start_neuron()},
        extra=f'\n[auth]\nrequire_api_key = true\napi_keys = ["{digest}"]\n',
        catalogue_extra=f'\n[aliases]\n{ALIAS} = "tiny-chat"\n',
    )


def test_claude_code_against_a_real_gateway(keyed_gateway: Daemon, tmp_path: Path) -> None:
    claude = claude_binary()
    (tmp_path / "home").mkdir()
    (tmp_path / "work").mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))},
        "HOME": str(tmp_path / "home"),
        "ANTHROPIC_AUTH_TOKEN": CLIENT_KEY,
        "ANTHROPIC_MODEL": ALIAS,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": ALIAS,
        "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1",
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "16",
        "API_TIMEOUT_MS": "240000",
    }
    with RecordingProxy(keyed_gateway.url) as proxy:
        env["ANTHROPIC_BASE_URL"] = proxy.url
        done = subprocess.run(
            [claude, "-p", "Reply with ok", "--output-format", "json", "--tools", "",
             "--system-prompt", "Be brief."],
            cwd=tmp_path / "work", env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=280, check=False,
        )  # fmt: skip
    seen = [(e.method, e.path.split("?")[0], e.status) for e in proxy.exchanges]
    context = f"{seen}\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}\n{keyed_gateway.log_text()[-2000:]}"
    result = json.loads(done.stdout)
    assert result["subtype"] == "success", context
    # The tiny model's random weights rarely emit an end token, so its reply runs into the
    # output cap; Claude Code asks it to continue a few times, then reports max_output_tokens.
    # That is the model's outcome; any other error (a protocol one) fails the test.
    if done.returncode != 0 or result["is_error"]:
        assert result.get("api_error") == "max_output_tokens", context
        assert result["api_error_status"] is None, context
    assert all(status < 400 for _, _, status in seen), context  # no 404 noise, no 401 on the probe
    hello = [e for e in proxy.exchanges if e.path == "/api/hello"]
    assert hello and all(e.method == "HEAD" and e.status == 200 for e in hello), context
    listing = next(e for e in proxy.exchanges if e.path.startswith("/v1/models"))
    assert listing.path == "/v1/models?limit=1000" and listing.status == 200
    assert ALIAS in [m["id"] for m in json.loads(listing.body)["data"]]
    messages = [e for e in proxy.exchanges if e.path.startswith("/v1/messages")]
    assert messages and all(e.keyed and e.status == 200 for e in messages), context


def test_the_discovery_listing_is_anthropic_shaped_with_keys_required(keyed_gateway: Daemon) -> None:
    # What Claude Code parses from the listing above, without the CLI: data[].id, display_name.
    conn = http.client.HTTPConnection("127.0.0.1", keyed_gateway.port, timeout=30)
    conn.request(
        "GET", "/v1/models?limit=1000", headers={**ANTHROPIC, "authorization": f"Bearer {CLIENT_KEY}"}
    )
    reply = conn.getresponse()
    listing = json.loads(reply.read())
    conn.close()
    assert reply.status == 200
    assert {m["id"]: m["display_name"] for m in listing["data"]}[ALIAS] == ALIAS
