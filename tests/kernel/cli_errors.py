"""Helpers for the tests of configuration errors: write a TOML file, run the CLI on it, and get
the one line it reports (a bad file must be refused with one clear ``error: FILE:LINE: key: ...``
line, never a traceback or a page of output)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_config(path: Path, text: str) -> Path:
    """``text`` dedented into ``path`` (its folder made), so tests can indent their TOML."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def single_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: "), output
    return lines[0]


def cli_error(run_cli: Callable[..., Any], *args: str, **kwargs: Any) -> str:
    """Run the CLI in-process (the ``run_cli`` fixture), expect exit status 2 (a configuration
    error) and return its one error line."""
    result = run_cli(*args, **kwargs)
    assert result.exit_code == 2, result.output
    return single_error_line(result.output)
