"""The neuron's trust boundary: what an inline profile from the network may load, and run.

Every escape out of the model roots is refused with 403 (a malformed source with 400) and
nothing is loaded; remote code and cache directories are the operator's to allow; the same
model inside a model root still loads and serves.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.daemons import Daemon, http_json

pytestmark = pytest.mark.slow


def _with_remote_code(model: Path, marker: Path) -> None:
    """Make ``model`` ask for code (``auto_map``) that would create ``marker`` when run."""
    config = json.loads((model / "config.json").read_text())
    config.update(
        model_type="cortex-remote-test", auto_map={"AutoConfig": "configuration_remote.RemoteConfig"}
    )
    (model / "config.json").write_text(json.dumps(config))
    (model / "configuration_remote.py").write_text(f"open({str(marker)!r}, 'w').close()\n")


def _load(neuron: Daemon, profile: dict[str, Any], wait: bool = True) -> tuple[int, dict[str, Any]]:
    status, reply, _ = http_json(
        "POST", f"{neuron.url}/models/load", {"profile": profile, "wait": wait}, timeout=120
    )
    return status, reply


def _held(neuron: Daemon) -> dict[str, str]:
    return {m["id"]: m["state"] for m in http_json("GET", f"{neuron.url}/models")[1]["data"]}


def _cache_root(tmp_path: Path, neuron: Daemon) -> Path:
    """The neuron's own cache directory for models: an allowed root besides model_roots."""
    root = tmp_path / f"neuron-{neuron.port}" / "cache" / "models"
    root.mkdir(parents=True, exist_ok=True)
    return root


def test_a_hub_shaped_source_never_loads_from_the_working_directory(
    start_neuron: Callable[..., Daemon],
    tiny_chat_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cwd = tmp_path / "cwd"
    shutil.copytree(tiny_chat_model, cwd / "evil" / "model")
    marker = tmp_path / "remote-code-ran"
    _with_remote_code(cwd / "evil" / "model", marker)
    monkeypatch.chdir(cwd)  # the neuron process starts here, as a service starts in its WorkingDirectory
    neuron = start_neuron()

    status, reply = _load(neuron, {"id": "evil/model", "harness": "transformers", "trust_remote_code": True})
    assert (status, reply["error"]["code"]) == (403, "source_not_allowed"), reply
    assert reply["error"]["param"] == "trust_remote_code"
    # Without remote code it is a hub id, looked up in the neuron's hub cache only (offline: absent).
    status, reply = _load(neuron, {"id": "evil/model", "harness": "transformers"})
    assert (status, reply["error"]["code"]) == (404, "model_not_found"), reply
    assert not marker.exists()
    assert _held(neuron).get("evil/model") != "ready"
    assert neuron.alive()


def test_every_escape_is_refused_and_nothing_loads(
    start_neuron: Callable[..., Daemon], tiny_chat_model: Path, tmp_path: Path
) -> None:
    neuron = start_neuron()
    outside = tmp_path / "outside" / "model"
    shutil.copytree(tiny_chat_model, outside)
    (_cache_root(tmp_path, neuron) / "escape").symlink_to(outside)
    escapes = [
        str(outside),
        "../" * 12 + str(outside).lstrip("/"),
        "escape",
        f"file://{outside}",
        "synthetic:../..",
        "~/model",
        # Relative to the neuron's working directory (the test's): a real model, outside the roots.
        "./" + os.path.relpath(outside),
    ]
    for wait in (True, False):
        for index, source in enumerate(escapes):
            profile: dict[str, Any] = {"id": f"escape-{index}", "harness": "transformers", "source": source}
            status, reply = _load(neuron, profile, wait=wait)
            assert (status, reply["error"]["code"]) == (403, "source_not_allowed"), (source, reply)
        status, reply = _load(
            neuron, {"id": "nul", "harness": "transformers", "source": "models/\x00x"}, wait
        )
        assert (status, reply["error"]["code"]) == (400, "invalid_source"), reply
        for option in ({"hub_cache_dir": str(tmp_path)}, {}):
            profile = {
                "id": "opts",
                "harness": "transformers",
                "source": str(tiny_chat_model),
                "options": option,
                "trust_remote_code": not option,
            }
            status, reply = _load(neuron, profile, wait=wait)
            assert (status, reply["error"]["code"]) == (403, "source_not_allowed"), reply
    assert _held(neuron) == {}
    assert neuron.alive()


def test_the_same_model_inside_a_model_root_still_loads(
    start_neuron: Callable[..., Daemon], tiny_chat_model: Path, tmp_path: Path
) -> None:
    neuron = start_neuron()
    shutil.copytree(tiny_chat_model, _cache_root(tmp_path, neuron) / "inside")
    for model_id, source in (("inside", "inside"), ("tiny-copy", str(tiny_chat_model))):
        status, reply = _load(neuron, {"id": model_id, "harness": "transformers", "source": source})
        assert (status, reply["state"]) == (200, "ready"), reply
        status, reply, _ = http_json(
            "POST",
            f"{neuron.url}/v1/chat/completions",
            {"model": model_id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        )
        assert status == 200 and reply["usage"]["completion_tokens"] >= 1


def test_the_operator_can_allow_remote_code_and_cache_dirs_inline(
    start_neuron: Callable[..., Daemon], tiny_chat_model: Path, tmp_path: Path
) -> None:
    neuron = start_neuron("allow_inline_remote_code = true\nallow_inline_cache_dirs = true\n")
    profile = {
        "id": "trusted",
        "harness": "transformers",
        "source": str(tiny_chat_model),
        "trust_remote_code": True,
        "options": {"hub_cache_dir": str(tmp_path / "hub")},
    }
    status, reply = _load(neuron, profile)
    assert (status, reply["state"]) == (200, "ready"), reply


def test_a_catalogue_profile_sent_inline_keeps_its_own_trust(
    start_neuron: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    # The gateway sends its catalogue's profiles inline; the same profile as the neuron's own
    # models.toml is the operator's, and needs no switch.
    neuron = start_neuron()
    profile = {"id": "tiny-chat", "harness": "transformers", "source": str(tiny_chat_model), "min_devices": 0}
    status, reply = _load(neuron, profile)
    assert (status, reply["state"]) == (200, "ready"), reply


def test_load_failures_keep_the_callers_status(start_neuron: Callable[..., Daemon]) -> None:
    neuron = start_neuron()
    status, reply = _load(
        neuron, {"id": "ghost", "harness": "transformers", "source": "synthetic:no-such-model"}
    )
    assert (status, reply["error"]["code"]) == (404, "model_not_found"), reply
    assert "synthetic:tiny-chat" in reply["error"]["message"]  # names the known ones
    status, reply = _load(
        neuron,
        {
            "id": "bad-dtype",
            "harness": "transformers",
            "source": "synthetic:tiny-chat",
            "options": {"dtype": "f8"},
        },
    )
    assert (status, reply["error"]["code"]) == (400, "invalid_option"), reply
    assert neuron.alive()


def test_the_token_scheme_is_case_insensitive(start_neuron: Callable[..., Daemon]) -> None:
    neuron = start_neuron(token="s3cret")
    for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
        assert _get_models(neuron, f"{scheme} s3cret") == 200, scheme
        assert _get_models(neuron, f"{scheme} wrong") == 401, scheme
    for header in ("Basic s3cret", "s3cret", "Bearer", "Bearers3cret", ""):
        assert _get_models(neuron, header) == 401, header


def _get_models(neuron: Daemon, authorization: str) -> int:
    request = urllib.request.Request(f"{neuron.url}/models")
    if authorization:
        request.add_header("authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status: int = response.status  # urlopen's result is typed Any
            return status
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code
