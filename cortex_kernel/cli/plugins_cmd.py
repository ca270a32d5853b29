"""``cortex-kernel plugins``: what was loaded, from where, implementing which hooks."""

from __future__ import annotations

import json

import click

from cortex_kernel.cli.context import state_from
from cortex_kernel.plugins import describe_plugins


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List loaded plugins with their version and the hooks they implement."""
    infos = describe_plugins(state_from(ctx).plugin_manager())
    if as_json:
        click.echo(json.dumps([info.to_dict() for info in infos], indent=2))
        return
    if not infos:
        click.echo("no plugins loaded")
        return
    width = max(len(info.name) for info in infos)
    for info in infos:
        origin = f"{info.distribution} {info.version}" if info.distribution else info.module
        click.echo(f"{info.name:<{width}}  {origin:<28}  {', '.join(info.hooks) or '-'}")
