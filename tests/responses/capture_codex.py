"""Record what the pinned Codex CLI really sends, as fixtures under ``tests/responses/captured/``.

Run from the repository root: ``python -m tests.responses.capture_codex``. Each scenario runs
``codex exec`` against a :class:`tests.responses.codex.CaptureServer` and writes one JSON file:
the Codex version, the command line, the ``config.toml``, and every request (method, path,
headers, body). Keys are fake (``FAKE_KEY``), so nothing secret is recorded.

Scenarios:

* ``codex-<version>-default.json``: one plain turn with Codex's defaults (no model metadata, so
  its own long instructions; every default tool, the ``namespace`` and hosted ``web_search``
  ones included).
* ``codex-<version>-tool-round-trip.json``: with a ``model_catalog_json`` entry; the server
  answers the first turn with a ``function_call`` of Codex's shell tool, so the second request
  carries the ``function_call`` and its ``function_call_output``, then a text answer ends it.
* ``codex-<version>-custom-tool.json``: the catalogue entry asks for the freeform
  ``apply_patch`` (a ``custom`` tool); the server answers with a ``custom_tool_call`` of it, so
  the second request carries ``custom_tool_call`` and ``custom_tool_call_output``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.responses.codex import (
    CAPTURED,
    CaptureServer,
    codex_binary,
    codex_home,
    custom_call_item,
    function_call_item,
    message_item,
    run_codex,
    sse_reply,
)

PROMPT = "Say hi."
TOOL_PROMPT = "Run `echo cortex` and tell me what it printed."


def version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    return done.stdout.split()[-1]


def shell_call(first_body: dict[str, Any]) -> dict[str, Any]:
    """A call of whichever shell tool this Codex version offers."""
    names = [tool.get("name") for tool in first_body["tools"] if tool.get("type") == "function"]
    if "exec_command" in names:
        return function_call_item("exec_command", {"cmd": "echo cortex"})
    if "shell_command" in names:
        return function_call_item("shell_command", {"command": "echo cortex"})
    return function_call_item("shell", {"command": ["echo", "cortex"]})


def record(
    path: Path, binary: str, config: str, args: list[str], server: CaptureServer, rc: int, scratch: Path
) -> None:
    payload = {
        "codex_version": version(binary),
        "command": ["codex", "exec", "--skip-git-repo-check", "--ephemeral", *args],
        "exit_status": rc,
        "config_toml": config,
        "requests": [vars(request) for request in server.requests],
    }
    text = json.dumps(payload, indent=1, ensure_ascii=False)
    # A committed fixture names no path of the machine that recorded it: its scratch folder and
    # its home (Codex sends the working directory, and a command's output may name the home).
    text = text.replace(str(scratch), "/scratch").replace(str(Path.home()) + "/", "~/")
    path.write_text(text + "\n")
    print(f"wrote {path} ({len(server.requests)} requests)")


def capture_default(binary: str, scratch: Path, out: Path) -> None:
    with CaptureServer() as server:
        home = codex_home(scratch / "default-home", server.base_url, "tiny-chat")
        config = (home / "config.toml").read_text().replace('web_search = "disabled"\n', "")
        (home / "config.toml").write_text(config)  # Codex's default: the hosted web_search tool
        done = run_codex(binary, home, scratch / "work", PROMPT)
        record(out, binary, config, [PROMPT], server, done.returncode, scratch)


def capture_tool_round_trip(binary: str, scratch: Path, out: Path) -> None:
    with CaptureServer() as server:
        home = codex_home(scratch / "tool-home", server.base_url, "tiny-chat", context_window=40960)
        # The first reply is decided after seeing the tools Codex offers, so probe once.
        with CaptureServer() as probe:
            probe_home = codex_home(scratch / "probe-home", probe.base_url, "tiny-chat", context_window=40960)
            run_codex(binary, probe_home, scratch / "work", PROMPT)
            call = shell_call(probe.posts()[0].body)
        server.replies.extend([sse_reply([call]), sse_reply([message_item("It printed cortex.")], "resp_2")])
        done = run_codex(binary, home, scratch / "work", TOOL_PROMPT)
        config = (home / "config.toml").read_text()
        record(out, binary, config, [TOOL_PROMPT], server, done.returncode, scratch)


PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello from cortex\n*** End Patch\n"


def capture_custom_tool(binary: str, scratch: Path, out: Path) -> None:
    with CaptureServer() as server:
        freeform = {"apply_patch_tool_type": "freeform"}
        home = codex_home(
            scratch / "custom-home", server.base_url, "tiny-chat", context_window=40960, catalogue=freeform
        )
        call = custom_call_item("apply_patch", PATCH)
        server.replies.extend([sse_reply([call]), sse_reply([message_item("Patched.")], "resp_2")])
        prompt = "Create hello.txt saying hello from cortex."
        done = run_codex(binary, home, scratch / "work", prompt, "--sandbox", "workspace-write")
        record(out, binary, (home / "config.toml").read_text(), [prompt], server, done.returncode, scratch)


def main() -> int:
    binary = codex_binary()
    CAPTURED.mkdir(exist_ok=True)
    tag = version(binary)
    with tempfile.TemporaryDirectory(prefix="codex-capture-") as scratch:
        capture_default(binary, Path(scratch), CAPTURED / f"codex-{tag}-default.json")
        capture_tool_round_trip(binary, Path(scratch), CAPTURED / f"codex-{tag}-tool-round-trip.json")
        capture_custom_tool(binary, Path(scratch), CAPTURED / f"codex-{tag}-custom-tool.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
