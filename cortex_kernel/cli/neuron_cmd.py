"""``cortex-kernel neuron``: run the per-host daemon that embeds inference engines."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from cortex_kernel.app import collect_parts, create_app, require_role_part
from cortex_kernel.cli.context import parse_sets, state_from
from cortex_kernel.cli.options import config_options
from cortex_kernel.config.addresses import ListenAddress, parse_listen
from cortex_kernel.config.errors import ConfigError
from cortex_kernel.config.loader import load_config
from cortex_kernel.config.plugin_tables import check_plugin_config
from cortex_kernel.config.schema import NeuronConfig
from cortex_kernel.kernel import Kernel
from cortex_kernel.serving import Listener, run_until_signalled, serve_forever


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``localhost`` included); names are not resolved."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(address: ListenAddress, config: NeuronConfig, path: Path | None) -> None:
    """Refuse to serve an unauthenticated neuron beyond loopback unless the operator insists.

    Whoever reaches a neuron can load models and run them on its GPUs, so a node listening on
    the network without a token is a choice made explicitly (``insecure_listen``), never by
    default.

    :raises ConfigError: a non-loopback listen address, no token, and no ``insecure_listen``.
    """
    if config.token or config.insecure_listen or is_loopback(address.host):
        return
    raise ConfigError(
        f"refusing to listen on {address.bind()} without a token: set token (and the gateway's "
        "neuron_token), listen on 127.0.0.1, or set insecure_listen = true (NEURON_INSECURE_LISTEN=true)",
        source=path,
        key="listen",
    )


@click.command("neuron")
@config_options
@click.option(
    "--listen",
    default=None,
    metavar="HOST:PORT",
    help="Listen address (default 0.0.0.0:13131; needs a token).",
)
@click.option("-p", "--port", type=click.IntRange(0, 65535), default=None, help="Listen port only.")
@click.pass_context
def neuron(
    ctx: click.Context, config_path: Path | None, sets: tuple[str, ...], listen: str | None, port: int | None
) -> None:
    """Run a neuron: the node daemon that loads models through harness plugins (port 13131).

    The listener binds first; default models then load in the background, so the node is
    reachable (and reports progress on /health) while they load.
    """
    state = state_from(ctx)
    overrides = parse_sets(sets)
    loaded = load_config("neuron", config_path, environ=state.environ, overrides=overrides)
    address = parse_listen(listen or loaded.value.listen)
    if port is not None:
        address = address._replace(port=port)
    check_exposure(address, loaded.value, loaded.path)
    pm = state.plugin_manager(tuple(loaded.value.plugins.block))
    for warning in check_plugin_config(loaded, pm):
        click.echo(f"warning: {warning}", err=True)
    kernel = Kernel(role="neuron", config=loaded, pm=pm)
    parts = collect_parts(kernel)
    require_role_part(kernel, parts)
    app = create_app(kernel, parts)
    grace = loaded.value.shutdown_timeout_s
    run_until_signalled(
        serve_forever(
            [Listener(app, address, "neuron", loaded.value.limits, server=loaded.value.server)],
            grace,
            [kernel.drain],
        )
    )
