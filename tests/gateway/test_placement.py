"""Placement across real neurons: eviction victims, pinned and busy survivors, failover, rejoin.

Each neuron gets a ``memory_budget_mb`` and every model a declared ``vram_mb`` so the gateway's
memory arithmetic, and therefore every placement, is deterministic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemons import Daemon, LineStream, admin_fleet, http_json, wait_nodes_up
from tests.gateway import tiny_fleet

pytestmark = pytest.mark.slow


def _resident(neuron: Daemon) -> set[str]:
    return set(http_json("GET", f"{neuron.url}/health")[1]["models"])


def test_lru_evicts_the_least_recent_and_spares_pinned_and_busy(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    neuron = start_neuron("memory_budget_mb = 130\n")
    catalogue = tiny_fleet.catalogue(
        tiny_chat_model, {"pin": 'pinned_on = ["n1"]', "a": "", "b": "", "c": "", "d": ""}
    )
    gateway = start_gateway({"n1": neuron}, extra='[eviction]\nstrategy = "lru"\n', catalogue_extra=catalogue)

    assert tiny_fleet.ask(gateway, "pin")[0] == 200
    assert tiny_fleet.ask(gateway, "a")[0] == 200
    assert _resident(neuron) >= {"pin", "a"}
    # No room for b: a is the only idle, unpinned resident, so a goes.
    assert tiny_fleet.ask(gateway, "b")[0] == 200
    assert "a" not in _resident(neuron) and {"pin", "b"} <= _resident(neuron)

    # Keep b busy with a long stream; c then has nothing it may evict.
    body = {
        "model": "b",
        "messages": [{"role": "user", "content": "go"}],
        "max_tokens": 40000,  # the tiny model decodes fast: keep the stream going for seconds
        "ignore_eos": True,
        "stream": True,
    }
    stream = LineStream(f"{gateway.url}/v1/chat/completions", "POST", body, timeout=120)
    lines = iter(stream)
    next(lines)
    deadline = time.monotonic() + 10
    while http_json("GET", f"{neuron.url}/health")[1]["models"]["b"]["in_flight"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # The gateway counts its own requests in flight, so no poll is needed before asking.
    status, reply, headers = tiny_fleet.ask(gateway, "c")
    assert (
        status == 503
        and reply["error"]["code"] == "no_capacity"
        and "retry-after" in {k.lower() for k in headers}
    )
    assert {"pin", "b"} <= _resident(neuron)
    stream.close()

    # Once b is idle again it is the least recently used and makes room for c.
    deadline = time.monotonic() + 10
    while http_json("GET", f"{neuron.url}/health")[1]["models"]["b"]["in_flight"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # ... and once the gateway has polled that (its view, not a fixed wait for a poll).
    while any(m["id"] == "b" and m["in_flight"] for n in admin_fleet(gateway)["nodes"] for m in n["models"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert tiny_fleet.ask(gateway, "c")[0] == 200
    assert _resident(neuron) == {"pin", "c"}
    assert admin_fleet(gateway)["evictions"] == 2


def test_priority_evicts_only_at_or_below_the_incoming_priority(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    neuron = start_neuron("memory_budget_mb = 130\n")
    catalogue = tiny_fleet.catalogue(
        tiny_chat_model,
        {
            "flagship": "priority = 200",
            "low": "priority = 50",
            "mid": "priority = 100",
            "peer": "priority = 100",
            "tiny": "priority = 10",
        },
    )
    gateway = start_gateway(
        {"n1": neuron}, extra='[eviction]\nstrategy = "priority"\n', catalogue_extra=catalogue
    )
    assert tiny_fleet.ask(gateway, "flagship")[0] == 200
    assert tiny_fleet.ask(gateway, "low")[0] == 200
    assert tiny_fleet.ask(gateway, "mid")[0] == 200  # evicts low (50 <= 100), never flagship (200)
    assert _resident(neuron) == {"flagship", "mid"}
    assert tiny_fleet.ask(gateway, "peer")[0] == 200  # equal priority counts: peers swap
    assert _resident(neuron) == {"flagship", "peer"}
    status, reply, _ = tiny_fleet.ask(gateway, "tiny")  # 10 may evict nothing here
    assert status == 503 and reply["error"]["code"] == "no_capacity"
    assert _resident(neuron) == {"flagship", "peer"}


def test_a_dead_node_fails_over_and_rejoins(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    first = start_neuron()
    second = start_neuron()
    gateway = start_gateway({"n1": first, "n2": second})
    assert tiny_fleet.ask(gateway, "tiny-chat")[0] == 200
    placed = "n1" if "tiny-chat" in _resident(first) else "n2"
    victim, survivor = (first, second) if placed == "n1" else (second, first)

    victim.kill()
    status, reply, _ = tiny_fleet.ask(gateway, "tiny-chat")
    assert status == 200, reply
    assert "tiny-chat" in _resident(survivor)

    wait_nodes_up(gateway, 1, timeout=30)

    victim.start().wait_healthy()
    wait_nodes_up(gateway, 2, timeout=30)
    assert http_json("GET", f"{gateway.url}/health")[1]["status"] == "ok"


def test_admin_errors_and_drain(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon]
) -> None:
    neuron = start_neuron()
    gateway = start_gateway({"n1": neuron})
    status, reply, _ = http_json(
        "POST", f"{gateway.url}/admin/models/load", {"model": "tiny-chat", "node": "nope"}
    )
    assert status == 404 and reply["error"]["code"] == "node_not_found"
    status, reply, _ = http_json("POST", f"{gateway.url}/admin/models/load", {"model": "ghost"})
    assert status == 404 and reply["error"]["code"] == "model_not_found"
    status, reply, _ = http_json(
        "POST", f"{gateway.url}/admin/models/load", {"model": "tiny-chat", "node": "n1"}
    )
    assert status == 202 and reply["node"] == "n1"
    deadline = time.monotonic() + 60
    while (
        "tiny-chat" not in _resident(neuron)
        or http_json("GET", f"{neuron.url}/health")[1]["models"]["tiny-chat"]["state"] != "ready"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    status, reply, _ = http_json("POST", f"{gateway.url}/admin/nodes/n1/drain", {"drain": True})
    assert status == 200 and reply["draining"] is True
    status, reply, _ = tiny_fleet.ask(gateway, "tiny-chat")
    assert status == 503  # a draining node takes no new traffic
    http_json("POST", f"{gateway.url}/admin/nodes/n1/drain", {"drain": False})
    assert tiny_fleet.ask(gateway, "tiny-chat")[0] == 200
    status, reply, _ = http_json("POST", f"{gateway.url}/admin/models/unload", {"model": "tiny-chat"})
    assert status == 200 and reply["nodes"] == ["n1"]
    assert "tiny-chat" not in _resident(neuron)


def test_defrag_after_cycles_drains_and_restarts_the_node(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    neuron = start_neuron("memory_budget_mb = 100\n")
    catalogue = tiny_fleet.catalogue(tiny_chat_model, {"a": "", "b": ""})
    gateway = start_gateway(
        {"n1": neuron}, extra="[eviction]\ndefrag_after_cycles = 3\n", catalogue_extra=catalogue
    )
    assert tiny_fleet.ask(gateway, "a")[0] == 200  # cycle 1: load a
    assert tiny_fleet.ask(gateway, "b")[0] == 200  # cycles 2 and 3: evict a, load b -> defragment
    deadline = time.monotonic() + 60
    while admin_fleet(gateway)["defrag_restarts"] < 1:
        assert time.monotonic() < deadline, "the node was never restarted"
        time.sleep(0.1)
    health = http_json("GET", f"{neuron.url}/health")[1]
    assert health["lifecycle_cycles"] == 0
    assert health["models"] == {"b": {"state": "ready", "in_flight": 0, "queued": 0}}
    assert not admin_fleet(gateway)["nodes"][0]["draining"]
    assert tiny_fleet.ask(gateway, "b")[0] == 200
