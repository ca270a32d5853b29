"""The neuron as the arbiter of its own models: concurrent loads, its memory budget, busy
unloads and waking a sleeping model, on a real neuron over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pytest

from tests.daemons import Daemon, LineStream, endless_stream, http_json, toml_str, unloadable_model

pytestmark = pytest.mark.slow


def load(neuron: Daemon, body: dict[str, Any], wait: bool = True) -> tuple[int, Any, dict[str, str]]:
    return http_json("POST", f"{neuron.url}/models/load", {**body, "wait": wait}, timeout=120)


def inline(model_id: str, source: str | Path, **fields: Any) -> dict[str, Any]:
    profile = {"id": model_id, "harness": "transformers", "source": str(source), "min_devices": 0, **fields}
    return {"profile": profile}


def chat(neuron: Daemon, model: str, max_tokens: int = 2) -> tuple[int, Any, dict[str, str]]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
    return http_json("POST", f"{neuron.url}/v1/chat/completions", body, timeout=60)


def models(neuron: Daemon) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in http_json("GET", f"{neuron.url}/models")[1]["data"]}


def reserved(neuron: Daemon) -> int:
    reserved_bytes: int = http_json("GET", f"{neuron.url}/health")[1]["memory"]["reserved_bytes"]
    return reserved_bytes


def test_concurrent_loads_of_different_chat_models_all_succeed(
    start_neuron: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    neuron = start_neuron()
    for count in (2, 4):
        bodies = [inline(f"c{count}-{i}", tiny_chat_model) for i in range(count)]
        with ThreadPoolExecutor(count) as pool:
            replies = list(pool.map(lambda body: load(neuron, body), bodies))
        assert [(status, body["state"]) for status, body, _ in replies] == [(200, "ready")] * count
        for body in bodies:
            assert chat(neuron, body["profile"]["id"])[0] == 200
    status, body, _ = load(neuron, {"model": "tiny-chat"})
    assert (status, body["state"]) == (200, "ready")
    assert chat(neuron, "tiny-chat")[0] == 200


def test_a_load_that_does_not_fit_the_budget_is_refused(
    start_neuron: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    neuron = start_neuron("memory_budget_mb = 20\n")
    assert load(neuron, {"model": "tiny-chat"})[0] == 200  # vram_mb = 16 in the catalogue
    status, body, headers = load(neuron, inline("other", tiny_chat_model, vram_mb=16))
    assert status == 409 and body["error"]["code"] == "over_budget"
    message = body["error"]["message"]
    assert "16 MiB" in message and "4 MiB" in message
    assert "retry-after" in {k.lower() for k in headers}
    assert "other" not in models(neuron)
    # A model bigger than the whole budget will never fit: no Retry-After then.
    status, body, headers = load(neuron, inline("huge", tiny_chat_model, vram_mb=64))
    assert status == 409 and body["error"]["code"] == "over_budget"
    assert "retry-after" not in {k.lower() for k in headers}
    # Room made, the same load goes through.
    assert http_json("POST", f"{neuron.url}/models/unload", {"model": "tiny-chat"})[0] == 200
    assert load(neuron, inline("other", tiny_chat_model, vram_mb=16))[0] == 200


def test_loads_in_progress_count_against_the_budget(
    start_neuron: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    neuron = start_neuron("memory_budget_mb = 20\n")
    first = load(neuron, inline("first", tiny_chat_model, vram_mb=16), wait=False)
    second = load(neuron, inline("second", tiny_chat_model, vram_mb=16), wait=False)
    assert first[0] in (200, 202)
    assert second[0] == 409 and second[1]["error"]["code"] == "over_budget"


def test_without_a_declared_size_the_checkpoint_is_measured_on_disk(
    start_neuron: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    # The tiny chat model is about 0.8 MiB of float32 weights: one fits a 1 MiB budget, two do not.
    neuron = start_neuron("memory_budget_mb = 1\n")
    assert load(neuron, inline("e1", tiny_chat_model))[0] == 200
    assert 0 < reserved(neuron) <= 1024 * 1024
    status, body, _ = load(neuron, inline("e2", "synthetic:tiny-chat"))
    assert status == 409 and body["error"]["code"] == "over_budget"


def test_a_failed_load_frees_its_budget_and_can_be_replaced(
    start_neuron: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    neuron = start_neuron("memory_budget_mb = 20\n")
    missing = unloadable_model(tiny_chat_model.parent)
    status, _, _ = load(neuron, inline("flaky", missing, vram_mb=16))
    assert status >= 400
    record = models(neuron)["flaky"]
    assert record["state"] == "failed" and record["memory_bytes"] is None
    assert reserved(neuron) == 0
    # Its 16 MiB are free again: another 16 MiB model fits a 20 MiB budget.
    assert load(neuron, {"model": "tiny-chat"})[0] == 200
    assert http_json("POST", f"{neuron.url}/models/unload", {"model": "tiny-chat"})[0] == 200
    # A later load of the same id replaces the failed record.
    status, body, _ = load(neuron, inline("flaky", tiny_chat_model, vram_mb=16))
    assert (status, body["state"], body["last_error"]) == (200, "ready", None)
    assert reserved(neuron) == 16 * 1024 * 1024


def test_unloading_a_busy_model_is_refused_unless_forced(start_neuron: Callable[..., Daemon]) -> None:
    neuron = start_neuron()
    assert load(neuron, {"model": "tiny-chat"})[0] == 200
    body = endless_stream("tiny-chat")
    with LineStream(f"{neuron.url}/v1/chat/completions", "POST", body, timeout=60) as stream:
        lines = iter(stream)
        next(lines)
        status, reply, headers = http_json("POST", f"{neuron.url}/models/unload", {"model": "tiny-chat"})
        assert status == 409 and reply["error"]["code"] == "model_busy"
        assert "retry-after" in {k.lower() for k in headers}
        assert models(neuron)["tiny-chat"]["state"] == "ready"
        status, reply, _ = http_json(
            "POST", f"{neuron.url}/models/unload", {"model": "tiny-chat", "force": True}
        )
        assert (status, reply["state"]) == (200, "absent")
        rest = list(lines)  # the stream ends (with its error event) instead of hanging
        assert rest
    assert models(neuron) == {}


def test_load_wakes_a_sleeping_model(start_neuron: Callable[..., Daemon]) -> None:
    neuron = start_neuron()
    assert load(neuron, {"model": "tiny-chat"})[0] == 200
    assert http_json("POST", f"{neuron.url}/models/sleep", {"model": "tiny-chat"})[1]["state"] == "sleeping"
    status, body, _ = chat(neuron, "tiny-chat")
    assert status == 503 and body["error"]["code"] == "model_sleeping"
    status, body, _ = load(neuron, {"model": "tiny-chat"}, wait=False)
    assert status in (200, 202)
    status, body, _ = load(neuron, {"model": "tiny-chat"})
    assert (status, body["state"]) == (200, "ready")
    assert chat(neuron, "tiny-chat")[0] == 200


def test_a_sleeping_model_holds_host_ram_not_the_device_budget(
    start_neuron: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    neuron = start_neuron("memory_budget_mb = 20\nhost_memory_budget_mb = 20\n")
    mib = 1024 * 1024
    assert load(neuron, {"model": "tiny-chat"})[0] == 200  # vram_mb = 16
    assert http_json("POST", f"{neuron.url}/models/sleep", {"model": "tiny-chat"})[0] == 200
    memory = http_json("GET", f"{neuron.url}/health")[1]["memory"]
    assert (memory["reserved_bytes"], memory["host_reserved_bytes"]) == (0, 16 * mib)
    assert memory["host_budget_bytes"] == 20 * mib
    # Its sleep made room on the device budget for another model...
    assert load(neuron, inline("other", tiny_chat_model, vram_mb=16))[0] == 200
    # ...so waking it now needs room that is taken,
    status, body, _ = load(neuron, {"model": "tiny-chat"})
    assert (status, body["error"]["code"]) == (409, "over_budget")
    assert models(neuron)["tiny-chat"]["state"] == "sleeping"
    # and the host budget holds one sleeping footprint, not two.
    status, body, _ = http_json("POST", f"{neuron.url}/models/sleep", {"model": "other"})
    assert (status, body["error"]["code"]) == (409, "host_over_budget")
    assert http_json("POST", f"{neuron.url}/models/unload", {"model": "other"})[0] == 200
    status, body, _ = http_json("POST", f"{neuron.url}/models/wake", {"model": "tiny-chat"})
    assert (status, body["state"]) == (200, "ready")
    assert chat(neuron, "tiny-chat")[0] == 200


def test_profile_source_outside_the_roots_is_not_a_budget_question(
    start_neuron: Callable[..., Daemon], tmp_path: Path
) -> None:
    neuron = start_neuron("memory_budget_mb = 1\n")
    status, body, _ = load(neuron, inline("escape", tmp_path / "elsewhere", vram_mb=64))
    assert status == 403, toml_str(body)


def test_a_wake_during_concurrent_sleeps_leaves_a_model_that_serves_and_sleeps_again(
    start_neuron: Callable[..., Daemon],
) -> None:
    """Found by the hostile campaign: a second sleep that arrived while the first was still
    moving the weights out answered ``sleeping`` at once; a wake sent then ran before the weights
    had left, and the model later came back "ready" with no weights (each chat or sleep a 500)."""
    neuron = start_neuron()
    assert load(neuron, {"model": "tiny-chat"})[0] == 200

    def post(route: str) -> tuple[int, Any, dict[str, str]]:
        return http_json("POST", f"{neuron.url}/models/{route}", {"model": "tiny-chat"}, timeout=60)

    for _ in range(5):
        with ThreadPoolExecutor(8) as pool:
            sleeps = [pool.submit(post, "sleep") for _ in range(6)]
            next(as_completed(sleeps))
            wake = pool.submit(post, "wake")
            assert all(s.result()[0] == 200 for s in sleeps)
            assert wake.result()[0] == 200
        status, body, _ = post("wake")
        assert (status, body["state"]) == (200, "ready")
        status, body, _ = chat(neuron, "tiny-chat")
        assert status == 200, body


def test_a_wake_that_an_unload_cancels_answers_503_not_500(start_neuron: Callable[..., Daemon]) -> None:
    """Found by the 15-minute soak: a wake racing an unload of the same model answered 500
    ``wake_failed`` ("waking failed: None"), which the gateway relays as 502. The model is
    going away, as a wake that arrives after the unload began is told: 503 ``model_unloading``;
    a wake that the threads' scheduling delays until the unload has finished finds no model, 404."""
    neuron = start_neuron()

    def post(route: str) -> tuple[int, Any, dict[str, str]]:
        return http_json("POST", f"{neuron.url}/models/{route}", {"model": "tiny-chat"}, timeout=60)

    statuses = set()
    for _ in range(12):
        assert load(neuron, {"model": "tiny-chat"})[0] == 200
        assert post("sleep")[0] == 200
        with ThreadPoolExecutor(2) as pool:
            wake = pool.submit(post, "wake")
            unload = pool.submit(post, "unload")
            status, body, _ = wake.result()
            assert unload.result()[0] == 200
        assert status == 200 or (status, body["error"]["code"]) in {
            (503, "model_unloading"),
            (404, "model_not_loaded"),
        }, body
        statuses.add(status)
    assert models(neuron) == {}
    assert statuses  # every round answered one of the two
