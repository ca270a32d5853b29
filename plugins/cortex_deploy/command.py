"""``cortex-kernel deploy``: roll the fleet in a manifest to the newest packages."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from cortex_deploy.manifest import Manifest, load_manifest
from cortex_deploy.report import render_plan, render_table, summary
from cortex_deploy.rollout import TransportFactory, roll_fleet
from cortex_deploy.ssh import SshTransport

EXIT_HOST_FAILED = 1


def ssh_transports(manifest: Manifest, control_dir: Path) -> TransportFactory:
    """One :class:`SshTransport` per host name, sharing connections under ``control_dir``."""
    ssh = manifest.ssh
    made: dict[str, SshTransport] = {}

    def transport_for(host: str) -> SshTransport:
        if host not in made:
            made[host] = SshTransport(
                host,
                user=ssh.user,
                port=ssh.port,
                sudo=ssh.sudo,
                options=tuple(ssh.options),
                control_dir=control_dir,
            )
        return made[host]

    return transport_for


@click.command("deploy")
@click.option(
    "--manifest",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    required=True,
    help="The fleet manifest (see fleet.example.toml).",
)
@click.option("--dry-run", is_flag=True, help="Print the plan; contact and change nothing.")
@click.option("--keep-going", is_flag=True, help="Roll the remaining hosts after a host fails.")
@click.pass_context
def deploy(ctx: click.Context, manifest: Path, dry_run: bool, keep_going: bool) -> None:
    """Roll the fleet described by MANIFEST to the newest packages.

    Over ssh, for each host: make sure the package repository is present and enabled; install
    the package when absent or upgrade it when the repository has a newer build (stopping the
    unit first); sync the config files; reload systemd; start the unit and wait for /health.
    Gateways first, then neurons one at a time. The first failure stops the roll unless
    --keep-going. Exits 1 when any host failed.
    """
    fleet = load_manifest(manifest)
    if dry_run:
        click.echo(render_plan(fleet))
        return
    with tempfile.TemporaryDirectory(prefix="cortex-deploy-ssh-") as control:
        outcomes = roll_fleet(fleet, ssh_transports(fleet, Path(control)), click.echo, keep_going=keep_going)
    click.echo("")
    click.echo(render_table(outcomes))
    click.echo(summary(outcomes))
    if any(outcome.failed for outcome in outcomes):
        ctx.exit(EXIT_HOST_FAILED)
