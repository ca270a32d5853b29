"""The real Codex CLI (``@openai/codex``, pinned by ``scripts/codex-env``) driven by ``codex exec``.

Three checks, from the wire up:

* Codex still sends what ``tests/responses/captured/`` recorded for this version (so the
  fixtures the Responses dialect is tested against stay true), to a capture server.
* The minimal event sequence Codex needs (``response.created``, ``response.output_item.done``
  per item, ``response.completed``) carries a whole tool round trip: Codex runs the call and
  sends its ``function_call_output`` in the next request.
* ``codex exec`` against a real gateway and neuron serving the tiny model ends without a
  protocol error and the gateway logs no translation error. It is skipped while the gateway
  does not serve ``POST /v1/responses`` (the Responses dialect is built on another branch).

How Codex is configured (see :func:`tests.responses.codex.codex_home`): ``CODEX_HOME`` in a
temporary directory, a model provider with ``wire_api = "responses"`` and the gateway's ``/v1``
as ``base_url``, ``env_key`` naming a variable that holds a fake key, ``approval_policy =
"never"``, ``sandbox_mode = "read-only"``, ``web_search = "disabled"`` and a
``model_catalog_json`` entry; ``codex exec --skip-git-repo-check --ephemeral`` with stdin closed.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.daemons import Daemon, http_json, toml_str
from tests.responses.codex import (
    CAPTURED,
    FAKE_KEY,
    CaptureServer,
    codex_binary,
    codex_home,
    function_call_item,
    message_item,
    run_codex,
    sse_reply,
)

pytestmark = pytest.mark.slow

# Features whose tools (sub-agents, goals, image generation, apps) make Codex's prompt larger
# than a tiny test model's window; a real model needs none of this.
SMALL_PROMPT = ("--disable", "multi_agent", "--disable", "goals", "--disable", "image_generation",
                "--disable", "apps")  # fmt: skip


@pytest.fixture(scope="module")
def codex() -> str:
    return codex_binary()


def fixture_for(codex: str, scenario: str) -> dict[str, Any]:
    version = subprocess.run([codex, "--version"], capture_output=True, text=True, check=True).stdout.split()[
        -1
    ]
    path = CAPTURED / f"codex-{version}-{scenario}.json"
    if not path.exists():
        pytest.skip(f"no capture for Codex {version}: run python -m tests.responses.capture_codex")
    recorded: dict[str, Any] = json.loads(path.read_text())
    return recorded


def test_codex_sends_what_the_fixtures_recorded(codex: str, tmp_path: Path) -> None:
    recorded = fixture_for(codex, "default")["requests"][0]
    with CaptureServer() as server:
        home = codex_home(tmp_path / "home", server.base_url, "tiny-chat")
        done = run_codex(codex, home, tmp_path / "work", "Say hi.", "-c", 'web_search="live"')
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")  # the capture server's answer, printed by Codex
    [sent] = server.posts()
    assert (sent.method, sent.path) == (recorded["method"], recorded["path"]) == ("POST", "/v1/responses")
    assert sent.headers["authorization"] == f"Bearer {FAKE_KEY}"
    assert sent.headers["accept"] == "text/event-stream"
    assert {"session-id", "x-codex-turn-metadata"} <= set(sent.headers)
    body, then = sent.body, recorded["body"]
    assert set(body) == set(then)
    assert body["stream"] is True and body["store"] is False and "instructions" not in body
    assert body["include"] == ["reasoning.encrypted_content"] and body["prompt_cache_key"]
    assert [(i["type"], i["role"]) for i in body["input"]] == [(i["type"], i["role"]) for i in then["input"]]
    kinds = {tool["type"] for tool in body["tools"]}
    assert kinds == {tool["type"] for tool in then["tools"]} and {"function", "namespace"} <= kinds


def test_a_tool_round_trip_on_the_minimal_event_sequence(codex: str, tmp_path: Path) -> None:
    with CaptureServer() as server:
        server.replies.extend(
            [
                sse_reply([function_call_item("exec_command", {"cmd": "echo cortex-round-trip"})]),
                sse_reply([message_item("It printed cortex-round-trip.")], "resp_2"),
            ]
        )
        home = codex_home(tmp_path / "home", server.base_url, "tiny-chat", context_window=40960)
        done = run_codex(codex, home, tmp_path / "work", "Run echo.")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "It printed cortex-round-trip." in done.stdout
    first, second = server.posts()
    assert "exec_command" in [tool.get("name") for tool in first.body["tools"]]
    call, output = second.body["input"][-2:]
    assert call["type"] == "function_call" and call["call_id"] == "call_1" and call["name"] == "exec_command"
    assert output["type"] == "function_call_output" and output["call_id"] == "call_1"
    assert "cortex-round-trip" in output["output"]


def test_the_captured_fixtures_hold_what_the_dialect_must_translate() -> None:
    captures = sorted(CAPTURED.glob("codex-*-*.json"))
    assert captures, "run python -m tests.responses.capture_codex"
    items, tools = set(), set()
    for path in captures:
        capture = json.loads(path.read_text())
        assert capture["exit_status"] == 0 and FAKE_KEY in json.dumps(capture["requests"][0]["headers"])
        for request in capture["requests"]:
            items |= {item["type"] for item in request["body"]["input"]}
            tools |= {tool["type"] for tool in request["body"]["tools"]}
    assert {"message", "function_call", "function_call_output", "custom_tool_call",
            "custom_tool_call_output"} <= items  # fmt: skip
    assert {"function", "namespace", "custom", "web_search"} <= tools


# ---------------------------------------------------------------------------------------------
# Against a real gateway.

TINY_WINDOW = 6144  # codex-tiny's context (tiny-chat's weights): Codex's prompt is ~4.4K tokens of it
CUT_BY_LENGTH = "ERROR: Incomplete response returned, reason: max_output_tokens"
TRANSLATION_ERRORS = re.compile(r"Traceback|unhandled error|stream failed|ERROR", re.IGNORECASE)


@pytest.fixture
def fleet(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon], tiny_chat_model: Path
) -> Daemon:
    neuron = start_neuron()
    codex_tiny = (
        f'\n[[models]]\nid = "codex-tiny"\nharness = "transformers"\nsource = {toml_str(tiny_chat_model)}\n'
        f"min_devices = 0\ncontext_length = {TINY_WINDOW}\n"
    )
    return start_gateway({"n1": neuron}, catalogue_extra=codex_tiny)


def serves_responses(gateway: Daemon) -> bool:
    status, body, _ = http_json("POST", gateway.url + "/v1/responses", {})
    return not (status == 404 and "model" not in json.dumps(body))


def test_codex_exec_against_a_real_gateway(codex: str, fleet: Daemon, tmp_path: Path) -> None:
    if not serves_responses(fleet):
        pytest.skip("the gateway does not serve POST /v1/responses (plugins/cortex_responses is not here)")
    home = codex_home(tmp_path / "home", fleet.url + "/v1", "codex-tiny", context_window=TINY_WINDOW)
    done = run_codex(codex, home, tmp_path / "work", "Say hi.", *SMALL_PROMPT, timeout_s=240)
    log = fleet.log_text()
    context = f"{done.stderr[-3000:]}\n--- gateway log ---\n{log[-3000:]}"
    # Codex read the streamed reply to its end: it prints the text and the usage it found in
    # response.completed (or response.incomplete).
    assert "tokens used" in done.stderr, context
    # The tiny model's random weights rarely emit an end token, so its reply may run until the
    # window is full; the dialect then ends with response.incomplete (max_output_tokens), which
    # Codex reports as an error of the turn. That is the model's outcome, not a protocol error;
    # nothing else may go wrong.
    errors = {line for line in done.stderr.splitlines() if line.startswith("ERROR")}
    assert done.returncode == 0 or errors == {CUT_BY_LENGTH}, context
    assert not TRANSLATION_ERRORS.search(log), log[-3000:]


def test_the_gateway_fixture_is_this_files_own(tmp_path: Path) -> None:
    # codex_home writes what the module docstring promises (the docs quote the same keys).
    home = codex_home(tmp_path, "http://127.0.0.1:31313/v1", "tiny-chat", context_window=TINY_WINDOW)
    config = (home / "config.toml").read_text()
    for line in ('wire_api = "responses"', 'base_url = "http://127.0.0.1:31313/v1"', "env_key =",
                 "model_catalog_json ="):  # fmt: skip
        assert line in config
    catalogue = json.loads((home / "models.json").read_text())["models"][0]
    assert catalogue["slug"] == "tiny-chat" and catalogue["context_window"] == TINY_WINDOW


def docs_blocks() -> tuple[str, str]:
    """The ``config.toml`` and ``model_catalog_json`` of docs/clients.md's Codex section."""
    text = (Path(__file__).resolve().parents[2] / "docs/clients.md").read_text()
    section = text[text.index("## Codex CLI") :]
    section = section[: section.index("\n## ", 1)]
    toml_block = re.search(r"```toml\n(.*?)```", section, re.S)
    json_block = re.search(r"```json\n(.*?)```", section, re.S)
    assert toml_block and json_block
    return toml_block.group(1), json_block.group(1)


def test_the_documented_codex_config_is_valid_for_the_pinned_codex(codex: str, tmp_path: Path) -> None:
    config, catalogue = docs_blocks()
    home = tmp_path / "home"
    home.mkdir()
    (home / "models.json").write_text(catalogue)
    with CaptureServer() as server:
        config = re.sub(r'base_url = "[^"]*"', f'base_url = "{server.base_url}"', config)
        config = re.sub(
            r'model_catalog_json = "[^"]*"', f'model_catalog_json = "{home / "models.json"}"', config
        )
        config = config.replace('env_key = "CORTEX_API_KEY"', 'env_key = "CORTEX_GATEWAY_KEY"')
        (home / "config.toml").write_text(config)
        done = run_codex(codex, home, tmp_path / "work", "Say hi.", "--strict-config")
    assert done.returncode == 0, done.stderr[-2000:]  # --strict-config refuses any unknown key
    assert "Model metadata" not in done.stderr  # the catalogue entry was found and read
    [sent] = server.posts()
    assert sent.body["model"] == json.loads(catalogue)["models"][0]["slug"] == "qwen3-coder"
    assert sent.body["input"][0]["content"][0]["text"].startswith("You are a coding agent working")
