"""Commands that inspect and steer a running gateway: ``status``, ``models``, ``load``, ``unload``,
``warm-up``."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from cortex_kernel.cli.http import request_json

DEFAULT_ENDPOINT = "http://127.0.0.1:31313"

endpoint_option = click.option(
    "-e",
    "--endpoint",
    default=DEFAULT_ENDPOINT,
    show_default=True,
    envvar="CORTEX_ENDPOINT",
    help="Gateway base URL (env CORTEX_ENDPOINT).",
)
admin_key_option = click.option(
    "--admin-key", envvar="CORTEX_ADMIN_KEY", default=None, help="Admin API key (env CORTEX_ADMIN_KEY)."
)


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def _model_rows(listing: dict[str, Any]) -> list[list[str]]:
    rows = []
    for entry in listing.get("data", []):
        locations = entry.get("locations") or []
        where = ", ".join(f"{loc.get('node')}({loc.get('state')})" for loc in locations) or "-"
        rows.append([entry.get("id", "?"), str(entry.get("context_length") or "-"), where])
    return rows


def _mib(value: Any) -> str:
    return f"{int(value) // (1024 * 1024)} MiB" if isinstance(value, int) else "-"


def _ago(timestamp: Any) -> str:
    if not isinstance(timestamp, int | float):
        return "-"
    seconds = max(0, int(time.time() - timestamp))
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60}m ago"


def render_fleet(health: dict[str, Any], fleet: dict[str, Any]) -> str:
    """The ``status`` tables: one row per node, one per model on a node."""
    nodes = fleet.get("nodes", [])
    node_rows = [
        [
            n["name"],
            ("draining" if n.get("draining") else "up") if n.get("up") else "down",
            str(len(n.get("devices") or [])),
            _mib((n.get("memory") or {}).get("free_bytes")),
            str(len(n.get("models") or [])),
            n.get("last_error") or "",
        ]
        for n in nodes
    ]
    model_rows = [
        [
            m["id"],
            n["name"],
            m.get("state", "?"),
            str(m.get("in_flight", 0)),
            _mib(m.get("memory_bytes")),
            _ago(m.get("last_used")),
            _countdown(m.get("sleep_in_s")),
            _countdown(m.get("unload_in_s")),
        ]
        for n in nodes
        for m in n.get("models") or []
    ]
    lines = [
        f"fleet {health.get('status', '?')}: {health.get('nodes', {}).get('up', '?')}/"
        f"{health.get('nodes', {}).get('total', '?')} nodes up, "
        f"{fleet.get('cold_starts', 0)} cold starts, {fleet.get('evictions', 0)} evictions, "
        f"{fleet.get('wakes', 0)} wakes, {fleet.get('thrash_events', 0)} thrash events",
        "",
        _table(node_rows, ["NODE", "STATE", "GPUS", "FREE", "MODELS", "LAST ERROR"]),
    ]
    if model_rows:
        headers = ["MODEL", "NODE", "STATE", "IN FLIGHT", "MEMORY", "LAST USED", "SLEEPS IN", "UNLOADS IN"]
        lines += ["", _table(model_rows, headers)]
    return "\n".join(lines)


def _countdown(seconds: float | None) -> str:
    """An idle-TTL countdown: ``-`` when no TTL applies."""
    return "-" if seconds is None else f"{seconds:.0f}s"


@click.command("status")
@endpoint_option
@admin_key_option
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
def status(endpoint: str, admin_key: str | None, as_json: bool) -> None:
    """Show fleet health: nodes, their memory, and every model with its state."""
    health = request_json("GET", f"{endpoint}/health")
    fleet = request_json("GET", f"{endpoint}/admin/fleet", token=admin_key)
    if as_json:
        click.echo(json.dumps({"health": health, "fleet": fleet}, indent=2))
        return
    click.echo(render_fleet(health, fleet))


@click.command("models")
@endpoint_option
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
def models(endpoint: str, as_json: bool) -> None:
    """List every model the fleet can serve, loaded or not."""
    listing = request_json("GET", f"{endpoint}/v1/models")
    if as_json:
        click.echo(json.dumps(listing, indent=2))
        return
    click.echo(_table(_model_rows(listing), ["MODEL", "CONTEXT", "LOCATIONS"]))


@click.command("load")
@click.argument("model")
@click.option("--node", default=None, help="Load on this node; default: let placement choose.")
@click.option("--no-wait", is_flag=True, help="Return once the load has started.")
@click.option("--timeout", type=float, default=1800.0, show_default=True, help="Seconds to wait.")
@endpoint_option
@admin_key_option
def load(
    model: str, node: str | None, no_wait: bool, timeout: float, endpoint: str, admin_key: str | None
) -> None:
    """Load MODEL on a node (through the gateway's admin API), showing progress."""
    body = {"model": model, "node": node}
    reply = request_json("POST", f"{endpoint}/admin/models/load", body, token=admin_key)
    click.echo(f"{model}: {reply.get('state', 'loading')} on {reply.get('node', node or '?')}")
    if no_wait:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fleet = request_json("GET", f"{endpoint}/admin/fleet", token=admin_key)
        state = _model_state(fleet, model, reply.get("node", node))
        if state in ("ready", "failed"):
            click.echo(f"{model}: {state}")
            if state == "failed":
                raise click.ClickException(f"loading {model} failed")
            return
        click.echo(f"{model}: {state or 'loading'}...")
        time.sleep(1.0)
    raise click.ClickException(f"{model} was not ready after {timeout:.0f}s")


def _model_state(fleet: dict[str, Any], model: str, node: str | None) -> str | None:
    for entry in fleet.get("nodes", []):
        if node and entry.get("name") != node:
            continue
        for item in entry.get("models", []):
            if item.get("id") == model:
                return str(item.get("state"))
    return None


@click.command("unload")
@click.argument("model")
@click.option("--node", default=None, help="Unload only from this node; default: everywhere.")
@endpoint_option
@admin_key_option
def unload(model: str, node: str | None, endpoint: str, admin_key: str | None) -> None:
    """Unload MODEL (through the gateway's admin API)."""
    body = {"model": model, "node": node}
    reply = request_json("POST", f"{endpoint}/admin/models/unload", body, token=admin_key)
    click.echo(f"{model}: {reply.get('state', 'unloaded')}")


@click.command("warm-up")
@click.option("--node", "nodes", multiple=True, help="Warm only this node (repeatable); default: every node.")
@click.option(
    "--reserve-mb",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Host RAM to keep free on each node for the sleeps of later evictions.",
)
@endpoint_option
@admin_key_option
def warm_up(nodes: tuple[str, ...], reserve_mb: int, endpoint: str, admin_key: str | None) -> None:
    """Fill each node's host RAM with sleeping copies of the catalogue's models, so that a
    request wakes a copy in seconds instead of a cold load. Run it before opening traffic: each
    copy is a cold load that holds the node's GPUs while it runs."""
    body: dict[str, Any] = {"reserve_mb": reserve_mb}
    if nodes:
        body["nodes"] = list(nodes)
    reply = request_json("POST", f"{endpoint}/admin/warm-up", body, token=admin_key, timeout=3600)
    for entry in reply.get("nodes", []):
        slept = entry.get("slept") or []
        click.echo(f"{entry.get('node')}: {len(slept)} asleep ({', '.join(slept) or 'none'})")
