"""Residency across real neurons: the sleep tier, idle TTLs, anti-thrash hysteresis, admin sleep/wake
and the warm-up.

Every neuron has a ``memory_budget_mb`` that holds one model and every model a declared
``vram_mb``, so each placement is deterministic. Waits are on observable state (the neuron's
``/health``), never fixed sleeps.
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from cortex_kernel.cli import build_cli
from cortex_kernel.cli.context import CliState
from tests.daemons import Daemon, admin_fleet, endless_stream, http_json
from tests.gateway import tiny_fleet

pytestmark = pytest.mark.slow


def _states(neuron: Daemon) -> dict[str, str]:
    return {m: v["state"] for m, v in http_json("GET", f"{neuron.url}/health")[1]["models"].items()}


def _wait_states(neuron: Daemon, wanted: dict[str, str | None], timeout: float = 90.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        states = _states(neuron)
        if all(states.get(model) == state for model, state in wanted.items()):
            return states
        if time.monotonic() > deadline:
            raise AssertionError(f"wanted {wanted}, the neuron shows {states}")
        time.sleep(0.2)


def _metric(url: str, name: str, **labels: str) -> float:
    """The value of one sample on a Prometheus page (0 when absent)."""
    with urllib.request.urlopen(url, timeout=30) as reply:
        text = reply.read().decode()
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_a_model_put_to_sleep_for_room_is_woken_not_reloaded(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    neuron = start_neuron("memory_budget_mb = 100\nhost_memory_budget_mb = 200\n")
    gateway = start_gateway(
        {"n1": neuron},
        extra='[eviction]\nstrategy = "lru"\n[residency]\nhysteresis_s = 0\n',
        catalogue_extra=tiny_fleet.catalogue(tiny_chat_model, {"a": "", "b": ""}),
    )
    metrics = f"{neuron.url}/metrics"
    assert tiny_fleet.ask(gateway, "a")[0] == 200
    # Room for b: a is put to sleep (its weights to host RAM), not unloaded.
    assert tiny_fleet.ask(gateway, "b")[0] == 200
    assert _wait_states(neuron, {"a": "sleeping", "b": "ready"})
    health = http_json("GET", f"{neuron.url}/health")[1]["memory"]
    assert health["host_reserved_bytes"] == 60 * 1024 * 1024  # sleeping a counts against host RAM
    assert health["reserved_bytes"] == 60 * 1024 * 1024  # and only b against the device budget
    # The next request for a wakes it where it sleeps (b goes to sleep in turn): no second load.
    status, body, _ = tiny_fleet.ask(gateway, "a")
    assert status == 200, body
    assert _wait_states(neuron, {"a": "ready", "b": "sleeping"})
    assert _metric(metrics, "cortex_neuron_wake_duration_seconds_count", model="a") == 1
    assert _metric(metrics, "cortex_neuron_load_duration_seconds_count", model="a", result="ok") == 1
    assert "woke a" in neuron.log_text()
    fleet = admin_fleet(gateway)
    assert (fleet["cold_starts"], fleet["wakes"], fleet["sleeps"]) == (2, 1, 2)
    assert fleet["thrash_events"] == 1  # a came back to n1 right after its eviction there
    gateway_metrics = _fleet_metrics_url(gateway)
    assert _metric(gateway_metrics, "cortex_thrash_events_total", node="n1", model="a") == 1
    assert _metric(gateway_metrics, "cortex_model_sleeps_total", reason="evicted") == 2


def _fleet_metrics_url(gateway: Daemon) -> str:
    config = (gateway.log.parent / "cortex.toml").read_text()
    match = re.search(r'metrics_listen = "127\.0\.0\.1:(\d+)"', config)
    assert match is not None
    port = match.group(1)
    return f"http://127.0.0.1:{port}/metrics"


def test_admin_sleep_and_wake_and_their_404s(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    neuron = start_neuron("memory_budget_mb = 100\nhost_memory_budget_mb = 200\n")
    gateway = start_gateway({"n1": neuron}, catalogue_extra=tiny_fleet.catalogue(tiny_chat_model, {"a": ""}))
    assert tiny_fleet.ask(gateway, "a")[0] == 200
    status, body, _ = http_json("POST", f"{gateway.url}/admin/nodes/n1/models/a/sleep")
    assert (status, body["state"]) == (200, "sleeping")
    assert _wait_states(neuron, {"a": "sleeping"})
    assert http_json("POST", f"{gateway.url}/admin/nodes/n1/models/a/wake")[0] == 200
    assert _wait_states(neuron, {"a": "ready"})
    for path, code in (
        ("nodes/nope/models/a/sleep", "node_not_found"),
        ("nodes/n1/models/ghost/wake", "model_not_found"),
        ("nodes/n1/models/tiny-chat/sleep", "model_not_loaded"),
    ):
        status, body, _ = http_json("POST", f"{gateway.url}/admin/{path}")
        assert (status, body["error"]["code"]) == (404, code), path


def test_an_idle_model_sleeps_after_its_ttl_and_unloads_after_the_second(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    neuron = start_neuron("memory_budget_mb = 200\nhost_memory_budget_mb = 200\n")
    gateway = start_gateway(
        {"n1": neuron},
        extra="[residency]\nttl_check_interval_s = 0.2\n",
        catalogue_extra=tiny_fleet.catalogue(
            tiny_chat_model, {"t": "idle_ttl_s = 3\nunload_ttl_s = 8", "keep": ""}
        ),
    )
    assert tiny_fleet.ask(gateway, "t")[0] == 200
    assert tiny_fleet.ask(gateway, "keep")[0] == 200
    countdown = next(m for n in admin_fleet(gateway)["nodes"] for m in n["models"] if m["id"] == "t")
    assert 0 < countdown["sleep_in_s"] <= 3 and 3 < countdown["unload_in_s"] <= 8
    _wait_states(neuron, {"t": "sleeping", "keep": "ready"})
    _wait_states(neuron, {"t": None, "keep": "ready"})
    assert "keep" in _states(neuron)  # no TTL, never touched


def test_two_models_on_a_node_for_one_swap_no_faster_than_the_hysteresis_allows(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    neuron = start_neuron("memory_budget_mb = 100\n")  # no host budget: evictions unload
    hysteresis = 3.0
    gateway = start_gateway(
        {"n1": neuron},
        extra=f'[eviction]\nstrategy = "lru"\n[residency]\nhysteresis_s = {hysteresis}\n',
        catalogue_extra=tiny_fleet.catalogue(tiny_chat_model, {"a": "", "b": ""}),
    )
    assert tiny_fleet.ask(gateway, "a")[0] == 200
    started = time.monotonic()
    for model in ("b", "a", "b", "a"):
        assert tiny_fleet.ask(gateway, model)[0] == 200
    elapsed = time.monotonic() - started
    fleet = admin_fleet(gateway)
    # The first swap is free; each swap back waits out the window since the last one.
    assert fleet["evictions"] == 4
    assert elapsed >= 3 * hysteresis * 0.9
    assert fleet["evictions"] <= 1 + elapsed / hysteresis
    assert fleet["thrash_events"] == 3  # every return within thrash_window_s is counted
    assert _metric(_fleet_metrics_url(gateway), "cortex_thrash_events_total") == 3


def test_a_warm_selector_resolves_to_the_ready_target(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    neuron = start_neuron("memory_budget_mb = 200\n")
    catalogue = tiny_fleet.catalogue(tiny_chat_model, {"big": "", "small": ""}) + (
        '\n[aliases]\ncoder = ["big", "small"]\n'
    )
    gateway = start_gateway({"n1": neuron}, catalogue_extra=catalogue)
    assert tiny_fleet.ask(gateway, "small")[0] == 200
    _wait_states(neuron, {"small": "ready"})
    status, body, _ = tiny_fleet.ask(gateway, "coder")
    assert (status, body["model"]) == (200, "small")  # the warm one, not a cold load of big
    assert "big" not in _states(neuron)
    listing = {m["id"]: m for m in http_json("GET", f"{gateway.url}/v1/models")[1]["data"]}
    assert listing["coder"]["alias_of"] == "small" and listing["coder"]["alias_targets"] == ["big", "small"]
    # With nothing of the list ready, the first eligible target is loaded.
    assert http_json("POST", f"{gateway.url}/admin/models/unload", {"model": "small"})[0] == 200
    _wait_states(neuron, {"small": None})
    status, body, _ = tiny_fleet.ask(gateway, "coder")
    assert (status, body["model"]) == (200, "big")


def _open_stream(gateway: Daemon, model: str) -> socket.socket:
    """A streamed request that runs until its socket is closed (sent raw, never read, so a
    request still queued at the neuron does not block the test)."""
    body = json.dumps(endless_stream(model)).encode()
    host, port = gateway.url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=30)
    conn.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return conn


def test_a_hot_model_gets_a_second_replica_and_loses_it_when_idle(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    busy = "memory_budget_mb = 200\n[admission]\nmax_in_flight = 1\nmax_wait_s = 120\n"
    n1, n2 = start_neuron(busy), start_neuron(busy)
    gateway = start_gateway(
        {"n1": n1, "n2": n2},
        extra="poll_interval_s = 0.3\n[residency]\nscale_out_after_s = 1\nttl_check_interval_s = 0.3\n",
        catalogue_extra=tiny_fleet.catalogue(
            tiny_chat_model, {"hot": "max_replicas = 2\nmin_replicas = 1\nidle_ttl_s = 2\nunload_ttl_s = 4"}
        ),
    )
    assert tiny_fleet.ask(gateway, "hot")[0] == 200
    first, second = (n1, n2) if "hot" in _states(n1) else (n2, n1)
    streams = [_open_stream(gateway, "hot") for _ in range(3)]  # one runs, two queue behind it
    try:
        _wait_states(second, {"hot": "ready"})  # sustained queueing: a replica on the idle node
        fleet = admin_fleet(gateway)
        assert fleet["scale_outs"] == 1
    finally:
        for conn in streams:
            conn.close()
    # Idle again: the replica beyond min_replicas goes under the TTL; one replica stays.
    deadline = time.monotonic() + 90
    while ("hot" in _states(first)) + ("hot" in _states(second)) != 1:
        assert time.monotonic() < deadline, (_states(first), _states(second))
        time.sleep(0.3)
    assert admin_fleet(gateway)["scale_ins"] == 1
    assert _metric(_fleet_metrics_url(gateway), "cortex_replica_scaling_total", kind="out") == 1


def test_a_model_gone_behind_the_gateways_back_is_a_404_for_admin_sleep_and_wake_and_reloaded_for_a_request(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    """Found by the hostile campaign: the gateway's view (a poll old) still showed the model, the
    neuron answered 404 ``model_not_loaded``, and the gateway made that a 502; a request for the
    model, planned as a wake there, failed the same way."""
    neuron = start_neuron("memory_budget_mb = 100\nhost_memory_budget_mb = 200\n")
    gateway = start_gateway(
        {"n1": neuron},
        extra="poll_interval_s = 600\n",
        catalogue_extra=tiny_fleet.catalogue(tiny_chat_model, {"a": ""}),
    )
    assert tiny_fleet.ask(gateway, "a")[0] == 200
    for verb in ("sleep", "wake"):
        assert http_json("POST", f"{gateway.url}/admin/nodes/n1/models/a/{verb}")[0] == 200
        # Gone behind the gateway's back (another gateway, an operator): the view is stale.
        assert http_json("POST", f"{neuron.url}/models/unload", {"model": "a", "force": True})[0] == 200
        status, body, _ = http_json("POST", f"{gateway.url}/admin/nodes/n1/models/a/{verb}")
        assert (status, body["error"]["code"]) == (404, "model_not_loaded"), (verb, status, body)
        assert tiny_fleet.ask(gateway, "a")[0] == 200  # reloaded: loads again
    # Asleep in the gateway's view, gone on the neuron: a request is still answered.
    assert http_json("POST", f"{gateway.url}/admin/nodes/n1/models/a/sleep")[0] == 200
    assert http_json("POST", f"{neuron.url}/models/unload", {"model": "a", "force": True})[0] == 200
    status, body, _ = tiny_fleet.ask(gateway, "a")
    assert status == 200, body
    assert _states(neuron) == {"a": "ready"}


def test_a_warm_up_leaves_sleeping_copies_on_every_node_and_a_request_wakes_one(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    """``POST /admin/warm-up`` loads and puts to sleep the catalogue's models on each node as far
    as its host budget allows; a request then wakes a copy where it sleeps, with no cold load."""
    budget = "memory_budget_mb = 100\nhost_memory_budget_mb = 300\n"  # one awake, four asleep
    neurons = {"n1": start_neuron(budget), "n2": start_neuron(budget)}
    gateway = start_gateway(
        neurons, catalogue_extra=tiny_fleet.catalogue(tiny_chat_model, {"a": "", "b": "", "c": ""})
    )

    status, body, _ = http_json("POST", f"{gateway.url}/admin/warm-up", {"reserve_mb": 0}, timeout=600)

    assert status == 200, body
    slept = {entry["node"]: entry["slept"] for entry in body["nodes"]}
    assert sorted(slept) == ["n1", "n2"]
    assert all(sorted(models) == ["a", "b", "c", "tiny-chat"] for models in slept.values())
    assert slept["n1"] != slept["n2"]  # each node takes the catalogue in its own turn
    for neuron in neurons.values():
        _wait_states(neuron, {m: "sleeping" for m in ("a", "b", "c", "tiny-chat")})
    gateway_metrics = _fleet_metrics_url(gateway)
    assert _metric(gateway_metrics, "cortex_model_sleeps_total", reason="warm_up") == 8

    assert tiny_fleet.ask(gateway, "b")[0] == 200
    woken = [name for name, neuron in neurons.items() if _states(neuron)["b"] == "ready"]
    assert len(woken) == 1
    metrics = f"{neurons[woken[0]].url}/metrics"
    assert _metric(metrics, "cortex_neuron_wake_duration_seconds_count", model="b") == 1
    # The warm-up's load, and no other:
    assert _metric(metrics, "cortex_neuron_load_duration_seconds_count", model="b", result="ok") == 1
    assert admin_fleet(gateway)["cold_starts"] == 0

    # Again, from the CLI: every node already holds every model, so there is nothing to do.
    cli = CliRunner().invoke(
        build_cli(), ["warm-up", "-e", gateway.url], obj=CliState(environ={}), catch_exceptions=False
    )
    assert cli.exit_code == 0, cli.output
    assert cli.output.splitlines() == ["n1: 0 asleep (none)", "n2: 0 asleep (none)"]


def test_a_warm_up_with_bad_input_is_a_clear_4xx(
    start_neuron: Callable[..., Daemon], start_gateway: Callable[..., Daemon], tiny_chat_model: Path
) -> None:
    neuron = start_neuron("memory_budget_mb = 100\nhost_memory_budget_mb = 200\n")
    gateway = start_gateway({"n1": neuron}, catalogue_extra=tiny_fleet.catalogue(tiny_chat_model, {"a": ""}))
    for body, status, code in (
        ({"nodes": ["n1", "nope"]}, 404, "node_not_found"),
        ({"reserve_mb": -1}, 400, "invalid_request"),
        ({"reserve_mb": "lots"}, 422, "invalid_type"),
        ({"node": "n1"}, 422, "invalid_type"),
    ):
        got, reply, _ = http_json("POST", f"{gateway.url}/admin/warm-up", body)
        assert got == status, (body, reply)
        assert reply["error"]["message"]
        if code is not None:
            assert reply["error"]["code"] == code, (body, reply)
    nested = b"[" * 20_000 + b"]" * 20_000
    for raw, content_type, status, code in (
        (b'{"reserve_mb": ', "application/json", 400, "invalid_json"),  # malformed
        (nested, "application/json", 422, "invalid_type"),  # hostile: refused at its first "["
        (b"reserve_mb=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (
            b'{"nodes": ["' + b"n" * 200_000 + b'"]}',
            "application/json",
            413,
            "request_too_large",
        ),  # oversized
    ):
        request = urllib.request.Request(f"{gateway.url}/admin/warm-up", data=raw, method="POST")
        request.add_header("content-type", content_type)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        reply = json.loads(refused.value.read())
        assert refused.value.code == status, (raw[:40], reply)
        assert reply["error"]["message"]
        if code is not None:
            assert reply["error"]["code"] == code, (raw[:40], reply)
    assert _states(neuron) == {}  # nothing was loaded by a refused warm-up
