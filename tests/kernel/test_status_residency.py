"""``cortex-kernel status`` shows sleeping models and their idle-TTL countdowns."""

from __future__ import annotations

from cortex_kernel.cli.fleet_cmd import render_fleet


def test_status_shows_sleeping_models_and_ttl_countdowns() -> None:
    health = {"status": "ok", "nodes": {"up": 1, "total": 1}}
    fleet = {
        "cold_starts": 2,
        "evictions": 1,
        "wakes": 3,
        "thrash_events": 1,
        "nodes": [
            {
                "name": "n1",
                "up": True,
                "devices": [],
                "memory": {"free_bytes": 0},
                "models": [
                    {"id": "a", "state": "sleeping", "sleep_in_s": None, "unload_in_s": 42.4},
                    {"id": "b", "state": "ready", "sleep_in_s": 7.0, "unload_in_s": None},
                ],
            }
        ],
    }
    text = render_fleet(health, fleet)
    assert "3 wakes, 1 thrash events" in text
    assert "SLEEPS IN" in text and "UNLOADS IN" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith(("a ", "b "))}
    assert rows["a"][2] == "sleeping" and rows["a"][-2:] == ["-", "42s"]
    assert rows["b"][2] == "ready" and rows["b"][-2:] == ["7s", "-"]
