"""The system commands some tests drive (shellcheck, promtool, systemd-analyze, openssl, ...)."""

from __future__ import annotations

import shutil

import pytest


def tool_or_skip(name: str, install: str) -> str:
    """The path of the command ``name``; skips the calling test, saying how to ``install`` it,
    when it is not on PATH (``scripts/install-system-deps`` installs them all)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"needs {name} ({install})")
    return path
