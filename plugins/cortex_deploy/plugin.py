"""Entry point of the deploy plugin: adds ``cortex-kernel deploy``."""

from __future__ import annotations

import click

from cortex_kernel.hookspecs import hookimpl


@hookimpl(trylast=True)
def register_commands(cli: click.Group) -> None:
    from cortex_deploy.command import deploy

    cli.add_command(deploy)
