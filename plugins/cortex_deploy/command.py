"""``cortex-kernel deploy`` (placeholder until the deploy issue lands)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("deploy")
@click.option("--manifest", type=click.Path(path_type=Path, dir_okay=False), required=True)
def deploy(manifest: Path) -> None:
    """Roll the fleet described by MANIFEST to the newest packages."""
    raise click.ClickException("deploy is not implemented yet")
