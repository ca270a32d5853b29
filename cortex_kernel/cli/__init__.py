"""The ``cortex-kernel`` command line.

Commands are plain click commands in modules named for what they do; plugins add more through
the ``register_commands`` hook. The group is built by :func:`build_cli`, so nothing is loaded at
import time.
"""

from __future__ import annotations

import sys

from cortex_kernel.cli.group import build_cli


def main() -> None:
    """Console-script entry point."""
    cli = build_cli()
    cli.main(prog_name="cortex-kernel", args=sys.argv[1:])


__all__ = ["build_cli", "main"]
