"""Which tests share a pytest-xdist worker (loaded from tests/conftest.py through ``pytest_plugins``).

`make unit` runs the suite on two workers with ``--dist loadgroup``. A test's group is its file,
so a module-scoped fleet starts once, on one worker; except under the directories below, whose
session-scoped fixtures are expensive to build twice (the project's RPMs, the deploy stand-in
RPMs): there the whole directory is one group. Without xdist (a plain ``pytest``, the vLLM
environment) this does nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Directories whose session-scoped fixtures several files share.
WHOLE_DIRECTORIES = ("rpm", "deploy")


def group_of(path: Path) -> str:
    """The xdist group of a test in ``path``: its directory under tests/ when listed, else its file."""
    tests = Path(__file__).resolve().parent
    if not path.resolve().is_relative_to(tests):
        return str(path)
    relative = path.resolve().relative_to(tests)
    if relative.parts[0] in WHOLE_DIRECTORIES:
        return relative.parts[0]
    return relative.as_posix()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.has_plugin("xdist"):
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group_of(item.path)))
