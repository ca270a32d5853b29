"""Gateways that share a fleet with others: the neuron is the arbiter, the gateway re-plans.

A gateway's view is a poll old and other gateways (and operators) change the same nodes, so a
model can leave a node between a poll and a request, and two plans can both pick one node.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.daemons import Daemon, LineStream, endless_stream, http_json, model_toml, unloadable_model

pytestmark = pytest.mark.slow

FAST_POLLS = "poll_interval_s = 0.3\npoll_timeout_s = 1.0\n"


def _catalogue(chat: Path, models: dict[str, Path | None]) -> str:
    return "".join(model_toml(name, source or chat, vram_mb=60) for name, source in models.items())


def _ask(gateway: Daemon, model: str, timeout: float = 120.0) -> tuple[int, Any, dict[str, str]]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    return http_json("POST", f"{gateway.url}/v1/chat/completions", body, timeout=timeout)


def _states(neuron: Daemon) -> dict[str, str]:
    models = http_json("GET", f"{neuron.url}/health", timeout=5)[1]["models"]
    return {name: entry["state"] for name, entry in models.items()}


def _view(gateway: Daemon) -> dict[str, dict[str, Any]]:
    return {n["name"]: n for n in http_json("GET", f"{gateway.url}/admin/fleet", timeout=5)[1]["nodes"]}


def _view_after_next_poll(gateway: Daemon, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    """The gateway's view once every node has had a whole poll that began after this call.

    The first poll to end after the call may have asked its node before it (what it carries can
    be stale), so this waits for the one after it: a node's polls run one after another."""
    called = time.time()
    deadline = time.monotonic() + timeout
    first: dict[str, float] = {}
    while True:
        view = _view(gateway)
        polled = {name: node["last_poll"] or 0.0 for name, node in view.items()}
        first.update({name: at for name, at in polled.items() if at > called and name not in first})
        if all(name in first and at > first[name] for name, at in polled.items()):
            return view
        assert time.monotonic() < deadline, f"no fresh poll of every node in {timeout} s: {view}"
        time.sleep(0.05)


def test_a_model_unloaded_behind_the_gateways_back_is_placed_again(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon]
) -> None:
    neuron = start_neuron()
    # Polls far apart: the gateway still believes the model is loaded when the next request comes.
    gateway = start_gateway({"n1": neuron}, extra="poll_interval_s = 60.0\n")
    assert _ask(gateway, "tiny-chat")[0] == 200
    for _ in range(3):
        assert http_json("POST", f"{neuron.url}/models/unload", {"model": "tiny-chat"})[0] == 200
        status, reply, _ = _ask(gateway, "tiny-chat")
        assert status == 200, reply  # not 404 model_not_loaded for a catalogue model
        assert _states(neuron) == {"tiny-chat": "ready"}

    assert http_json("POST", f"{neuron.url}/models/unload", {"model": "tiny-chat"})[0] == 200
    body = {"model": "tiny-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    with LineStream(f"{gateway.url}/v1/chat/completions", "POST", {**body, "stream": True}) as stream:
        assert stream.status == 200
        assert list(stream)[-1] == "data: [DONE]"


def test_a_failed_load_holds_no_room_in_the_gateways_view(
    start_neuron: Callable[..., Daemon],
    start_gateway: Callable[..., Daemon],
    tiny_chat_model: Path,
    tiny_model_root: Path,
) -> None:
    neuron = start_neuron("memory_budget_mb = 100\n")
    missing = unloadable_model(tiny_model_root)  # inside the roots: the load starts and fails
    catalogue = _catalogue(tiny_chat_model, {"broken": missing, "a": None})
    gateway = start_gateway({"n1": neuron}, extra=FAST_POLLS, catalogue_extra=catalogue)
    assert _ask(gateway, "broken")[0] >= 400
    deadline = time.monotonic() + 10
    while "broken" not in {m["id"] for m in _view(gateway)["n1"]["models"]}:
        assert time.monotonic() < deadline, "the gateway never saw the failed record"
        time.sleep(0.1)
    assert _view(gateway)["n1"]["memory"]["free_bytes"] == 100 * 1024 * 1024
    status, reply, _ = _ask(gateway, "a")
    assert status == 200, reply


def test_two_gateways_bursting_at_different_cold_models_stay_within_every_budget(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    """Needs the neuron as arbiter (409 ``over_budget`` / ``model_busy``): without it both
    gateways load onto the first node by name and it runs over its budget."""
    neurons = {"n1": start_neuron("memory_budget_mb = 100\n"), "n2": start_neuron("memory_budget_mb = 100\n")}
    catalogue = _catalogue(tiny_chat_model, {"a": None, "b": None})  # 60 MiB each: one per node
    gateways = [start_gateway(neurons, extra=FAST_POLLS, catalogue_extra=catalogue) for _ in range(2)]
    over: list[str] = []
    watching = True

    def watch() -> None:
        # Every resident (loading or ready) declares 60 MiB; a node holds at most one.
        while watching:
            for name, neuron in neurons.items():
                held = [m for m, state in _states(neuron).items() if state in ("loading", "ready")]
                if len(held) * 60 > 100:
                    over.append(f"{name} holds {held}")
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for run in range(10):
            answers: list[tuple[int, Any, dict[str, str]]] = []

            def ask(
                gateway: Daemon, model: str, answers: list[tuple[int, Any, dict[str, str]]] = answers
            ) -> None:
                answers.append(_ask(gateway, model))

            threads = [
                threading.Thread(target=ask, args=(gateway, model))
                for gateway, model in ((gateways[0], "a"), (gateways[1], "b"))
                for _ in range(5)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(180)
            assert len(answers) == 10
            for status, reply, headers in answers:
                retry = "retry-after" in {k.lower() for k in headers}
                assert status == 200 or (status == 503 and retry), f"run {run}: {status} {reply}"
            assert not over, f"run {run}: over budget: {over}"
            for gateway in gateways:  # each view is corrected by the next poll: never negative
                for name, node in _view_after_next_poll(gateway).items():
                    assert node["memory"]["free_bytes"] >= 0, f"run {run}: {name} {node['memory']}"
            for neuron in neurons.values():  # cold again for the next run
                for model in _states(neuron):
                    assert http_json("POST", f"{neuron.url}/models/unload", {"model": model})[0] == 200
            for gateway in gateways:  # and both gateways know it before the next burst
                view = _view_after_next_poll(gateway)
                assert not [m for node in view.values() for m in node["models"]], view
    finally:
        watching = False
        watcher.join(10)


def test_an_eviction_the_neuron_refuses_as_busy_is_re_planned(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    """Needs the neuron as arbiter (409 ``model_busy`` for an unload with requests)."""
    neuron = start_neuron("memory_budget_mb = 100\n")
    catalogue = _catalogue(tiny_chat_model, {"a": None, "b": None})
    serving = start_gateway({"n1": neuron}, extra=FAST_POLLS, catalogue_extra=catalogue)
    assert _ask(serving, "a")[0] == 200
    # This one polls once at start and then seldom: it never sees the other gateway's stream.
    evicting = start_gateway({"n1": neuron}, extra="poll_interval_s = 120.0\n", catalogue_extra=catalogue)
    assert [(m["id"], m["state"], m["in_flight"]) for m in _view(evicting)["n1"]["models"]] == [
        ("a", "ready", 0)
    ]
    body = endless_stream("a")
    with LineStream(f"{serving.url}/v1/chat/completions", "POST", body, timeout=60) as stream:
        lines = iter(stream)
        next(lines)
        # ``a`` looks idle to this gateway, so it evicts it to make room; the neuron refuses.
        status, reply, headers = _ask(evicting, "b")
        assert status == 503 and reply["error"]["code"] == "no_capacity", reply
        assert "retry-after" in {k.lower() for k in headers}
        assert _states(neuron) == {"a": "ready"}
        for _ in range(20):  # the stream on ``a`` carries on
            assert "error" not in next(lines)
