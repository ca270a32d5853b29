"""``cortex-kernel serve``: run the gateway (with an embedded local neuron when no fleet is set)."""

from __future__ import annotations

from pathlib import Path

import click

from cortex_kernel.app import collect_parts, create_app, require_role_part
from cortex_kernel.cli.context import parse_sets, state_from
from cortex_kernel.cli.gateway_listeners import gateway_listeners
from cortex_kernel.cli.options import config_options
from cortex_kernel.cli.serve_workers import serve_workers
from cortex_kernel.config.addresses import parse_listen
from cortex_kernel.config.loader import load_config
from cortex_kernel.config.plugin_tables import check_plugin_config
from cortex_kernel.drain import Drain
from cortex_kernel.embedded import embedded_setup
from cortex_kernel.event_loops import loop_factory
from cortex_kernel.kernel import Kernel
from cortex_kernel.serving import Listener, run_until_signalled, serve_forever


@click.command("serve")
@config_options
@click.option("--listen", default=None, metavar="HOST:PORT", help="API listen address (gateway.listen).")
@click.option(
    "--metrics-listen", default=None, metavar="HOST:PORT", help="Metrics address (gateway.metrics_listen)."
)
@click.pass_context
def serve(
    ctx: click.Context,
    config_path: Path | None,
    sets: tuple[str, ...],
    listen: str | None,
    metrics_listen: str | None,
) -> None:
    """Run the gateway: one OpenAI endpoint (and every dialect plugin's) over every configured neuron.

    With no [[neurons]] configured (for example on a fresh machine with no configuration at
    all), the gateway starts one neuron in-process on loopback with the transformers harness
    and a default catalogue, so `cortex-kernel serve` works out of the box.
    """
    state = state_from(ctx)
    overrides = parse_sets(sets)
    if listen:
        overrides["gateway.listen"] = listen
    if metrics_listen:
        overrides["gateway.metrics_listen"] = metrics_listen
    loaded = load_config("cortex", config_path, environ=state.environ, overrides=overrides)
    pm = state.plugin_manager(tuple(loaded.value.plugins.block))
    for warning in check_plugin_config(loaded, pm):
        click.echo(f"warning: {warning}", err=True)
    factory = loop_factory(loaded.value.gateway.event_loop)
    workers = loaded.value.gateway.workers
    if workers > 1:
        ctx.exit(serve_workers(loaded, pm, factory))
    listeners: list[Listener] = []
    drains: list[Drain] = []
    if not loaded.value.neurons:
        loaded, neuron_loaded, neuron_address = embedded_setup(loaded)
        neuron_kernel = Kernel(role="neuron", config=neuron_loaded, pm=pm)
        neuron_parts = collect_parts(neuron_kernel)
        require_role_part(neuron_kernel, neuron_parts)
        neuron_app = create_app(neuron_kernel, neuron_parts)
        listeners.append(
            Listener(
                neuron_app,
                neuron_address,
                "embedded-neuron",
                neuron_loaded.value.limits,
                server=neuron_loaded.value.server,
            )
        )
        drains.append(neuron_kernel.drain)
    kernel = Kernel(role="gateway", config=loaded, pm=pm)
    drains.append(kernel.drain)
    api_listener, metrics_listener = gateway_listeners(
        kernel, parse_listen(loaded.value.gateway.listen), parse_listen(loaded.value.gateway.metrics_listen)
    )
    listeners.insert(0, api_listener)
    if metrics_listener is not None:
        listeners.append(metrics_listener)
    run_until_signalled(serve_forever(listeners, loaded.value.gateway.shutdown_grace_s, drains), factory)
