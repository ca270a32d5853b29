"""Options shared by the commands that load a configuration."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def config_options(func: F) -> F:
    """``--config PATH`` and ``--set KEY=VALUE``, the file and command-line layers."""
    func = click.option(
        "--set",
        "sets",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override one configuration key (dotted, e.g. gateway.listen=0.0.0.0:31313).",
    )(func)
    func = click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Configuration file. Default: the first found in the documented search order.",
    )(func)
    return func
