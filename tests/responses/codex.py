"""The real Codex CLI for tests: where its binary is, a throwaway CODEX_HOME, and a capture server.

Codex (``@openai/codex`` from npm, pinned and cached by ``scripts/codex-env``) speaks only the
Responses API. Tests run ``codex exec`` non-interactively with a ``CODEX_HOME`` in a temporary
directory whose ``config.toml`` names one model provider with ``wire_api = "responses"`` and a
``base_url`` pointing at the server under test, a fake key in an environment variable, and a
``model_catalog_json`` entry that gives the model a context window and short base instructions
(without one, Codex warns "Model metadata ... not found" and sends ~17 KB of GPT instructions).

:class:`CaptureServer` is a stand-in for a Responses endpoint that records every request Codex
sends (method, path, headers, JSON body) and answers each with a scripted SSE stream carrying
only the events Codex requires (``response.created``, ``response.output_item.done`` for each
item, ``response.completed`` with usage). It is what ``tests/responses/captured/`` is made from.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.loopback import LoopbackServer
from tests.pinned_cli import pinned_cli

FAKE_KEY = "cortex-test-not-a-secret"
KEY_ENV = "CORTEX_GATEWAY_KEY"
CAPTURED = Path(__file__).parent / "captured"
EXEC_TIMEOUT_S = 300


def codex_binary() -> str:
    """The pinned Codex binary: ``$CORTEX_CODEX`` (set by ``make unit``) or ``scripts/codex-env``;
    else skip."""
    return pinned_cli("CORTEX_CODEX", "codex-env", "Codex")


def catalogue_entry(model: str, context_window: int, **overrides: Any) -> dict[str, Any]:
    """One ``model_catalog_json`` entry: what Codex needs to know of a gateway model.

    ``apply_patch_tool_type = "freeform"`` in ``overrides`` adds Codex's ``apply_patch`` as a
    ``custom`` (free-text input) tool.
    """
    return {
        "slug": model,
        "display_name": model,
        "description": "served by a cortex-kernel gateway",
        "supported_reasoning_levels": [],
        "shell_type": "shell_command",
        "visibility": "list",
        "supported_in_api": True,
        "priority": 1,
        "base_instructions": "You are a coding agent. Answer briefly.",
        "support_verbosity": False,
        "truncation_policy": {"mode": "tokens", "limit": 10000},
        "supports_parallel_tool_calls": False,
        "context_window": context_window,
        "experimental_supported_tools": [],
        "input_modalities": ["text"],
        **overrides,
    }


def codex_home(
    directory: Path,
    base_url: str,
    model: str,
    *,
    context_window: int | None = None,
    catalogue: dict[str, Any] | None = None,
) -> Path:
    """A CODEX_HOME whose config points Codex at ``base_url`` (the ``/v1`` root) for ``model``."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        f'model = "{model}"',
        'model_provider = "cortex"',
        'approval_policy = "never"',
        'sandbox_mode = "read-only"',
        'web_search = "disabled"',
    ]
    if context_window is not None:
        entry = catalogue_entry(model, context_window, **(catalogue or {}))
        (directory / "models.json").write_text(json.dumps({"models": [entry]}, indent=1))
        lines.append(f"model_catalog_json = {json.dumps(str(directory / 'models.json'))}")
    lines += [
        "",
        "[model_providers.cortex]",
        'name = "cortex-kernel gateway"',
        f'base_url = "{base_url}"',
        'wire_api = "responses"',
        f'env_key = "{KEY_ENV}"',
        "request_max_retries = 0",
        "stream_max_retries = 0",
    ]
    (directory / "config.toml").write_text("\n".join(lines) + "\n")
    return directory


@dataclass
class CodexRun:
    returncode: int
    stdout: str
    stderr: str


def run_codex(
    binary: str, home: Path, workdir: Path, prompt: str, *extra: str, timeout_s: float = EXEC_TIMEOUT_S
) -> CodexRun:
    """``codex exec`` with no terminal and no stdin (it would otherwise wait to read a prompt)."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_"))},
        "CODEX_HOME": str(home),
        KEY_ENV: FAKE_KEY,
        "NO_COLOR": "1",
        "RUST_LOG": "error",
    }
    done = subprocess.run(
        [binary, "exec", "--skip-git-repo-check", "--ephemeral", "--color", "never", "-C", str(workdir),
         *extra, prompt],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=timeout_s, check=False,
    )  # fmt: skip
    return CodexRun(done.returncode, done.stdout, done.stderr)


# ---------------------------------------------------------------------------------------------
# A capture server: the minimum Responses endpoint Codex accepts, recording what it receives.


def message_item(text: str, item_id: str = "msg_1") -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def function_call_item(name: str, arguments: dict[str, Any], call_id: str = "call_1") -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": "fc_" + call_id,
        "call_id": call_id,
        "name": name,
        "arguments": json.dumps(arguments),
        "status": "completed",
    }


def custom_call_item(name: str, text: str, call_id: str = "call_2") -> dict[str, Any]:
    return {
        "type": "custom_tool_call",
        "id": "ctc_" + call_id,
        "call_id": call_id,
        "name": name,
        "input": text,
        "status": "completed",
    }


def sse_reply(items: list[dict[str, Any]], response_id: str = "resp_1") -> bytes:
    """The events Codex requires for a reply made of ``items``."""
    usage = {
        "input_tokens": 5,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 8,
    }
    created = {"id": response_id, "object": "response", "status": "in_progress", "output": []}
    events: list[dict[str, Any]] = [{"type": "response.created", "response": created}]
    events += [
        {"type": "response.output_item.done", "output_index": index, "item": item}
        for index, item in enumerate(items)
    ]
    done = {**created, "status": "completed", "output": items, "usage": usage}
    events.append({"type": "response.completed", "response": done})
    return b"".join(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode() for event in events)


@dataclass
class Captured:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class CaptureServer:
    """A threaded HTTP server on loopback; ``replies`` are answered in order (then a plain "ok")."""

    replies: deque[bytes] = field(default_factory=deque)
    requests: list[Captured] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def _record(self, body: bytes) -> None:
                decoded: Any = json.loads(body) if body else None
                headers = {name.lower(): value for name, value in self.headers.items()}
                server.requests.append(Captured(self.command, self.path, headers, decoded))

            def _send(self, status: int, kind: str, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._record(b"")
                self._send(200, "application/json", b'{"object": "list", "data": []}')

            def do_POST(self) -> None:
                self._record(self.rfile.read(int(self.headers.get("content-length") or 0)))
                reply = server.replies.popleft() if server.replies else sse_reply([message_item("ok")])
                self._send(200, "text/event-stream", reply)

        self.server = LoopbackServer(Handler, "codex-capture")

    @property
    def base_url(self) -> str:
        return f"{self.server.origin}/v1"

    def __enter__(self) -> CaptureServer:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def posts(self) -> list[Captured]:
        return [request for request in self.requests if request.method == "POST"]
