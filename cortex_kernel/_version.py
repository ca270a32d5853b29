"""The installed distribution's version, as packaging tools and ``--version`` report it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "cortex-kernel"


def package_version() -> str:
    """Return the PEP 440 version of the installed distribution.

    A pre-release keeps its marker (``0.2.0a1``, ``0.2.0rc2``, ``0.2.0.dev3``), so a build from
    the unstable channel never claims to be the release it precedes.
    """
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"
