"""The root ``cortex-kernel`` group: global options, plugin-contributed commands, error exits."""

from __future__ import annotations

import logging
from typing import Any

import click

from cortex_kernel._version import package_version
from cortex_kernel.cli.context import state_from
from cortex_kernel.config.errors import ConfigError
from cortex_kernel.plugins import PluginError
from cortex_kernel.serving import ListenError
from cortex_kernel.workers import WorkerFatal

EXIT_CONFIG = 2


class KernelGroup(click.Group):
    """A group that adds plugin commands after global options are parsed.

    Plugin commands come from ``register_commands``; they are resolved lazily so that
    ``--block-plugin`` (parsed first) applies to them too. Configuration and plugin errors raised
    by any command (or by a gateway worker, passed on by its supervisor) exit with status 2 and one
    message on stderr.
    """

    def _plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        cache: dict[str, click.Command] | None = ctx.meta.get("cortex_kernel.plugin_commands")
        if cache is None:
            holder = click.Group()
            try:
                state_from(ctx).plugin_manager().hook.register_commands(cli=holder)
            except PluginError as exc:
                raise click.ClickException(str(exc)) from exc
            cache = {name: cmd for name, cmd in holder.commands.items() if name not in self.commands}
            ctx.meta["cortex_kernel.plugin_commands"] = cache
        return cache

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugin_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self._plugin_commands(ctx).get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, PluginError, WorkerFatal) as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_CONFIG)
        except ListenError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def build_cli() -> click.Group:
    """Assemble the command tree (built-in commands; plugin commands resolve lazily)."""
    from cortex_kernel.cli import config_cmd, fleet_cmd, neuron_cmd, plugins_cmd, serve_cmd

    @click.group(cls=KernelGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(package_version(), "-V", "--version", prog_name="cortex-kernel")
    @click.option(
        "--block-plugin",
        multiple=True,
        metavar="NAME",
        help="Do not load the plugin NAME (repeatable). Also CORTEX_KERNEL_BLOCK_PLUGINS=a,b.",
    )
    @click.option(
        "--log-level",
        type=click.Choice(["debug", "info", "warning", "error"]),
        default="info",
        show_default=True,
        help="Log verbosity for daemons and commands.",
    )
    @click.pass_context
    def cli(ctx: click.Context, block_plugin: tuple[str, ...], log_level: str) -> None:
        """One LLM endpoint over a fleet of GPU hosts.

        `serve` runs the gateway, `neuron` runs the per-host daemon; the other commands inspect
        and steer a running fleet or the configuration.
        """
        state_from(ctx)
        _configure_logging(log_level)

    for command in (
        serve_cmd.serve,
        neuron_cmd.neuron,
        fleet_cmd.status,
        fleet_cmd.models,
        fleet_cmd.load,
        fleet_cmd.unload,
        fleet_cmd.warm_up,
        plugins_cmd.plugins,
        config_cmd.config,
    ):
        cli.add_command(command)
    return cli
