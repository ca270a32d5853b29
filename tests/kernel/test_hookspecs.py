"""Every hook is documented like an API and tested, and hooks stay synchronous factories."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from cortex_kernel import hookspecs

ROOT = Path(__file__).resolve().parents[2]
HOOKS = sorted(
    name
    for name, func in vars(hookspecs).items()
    if inspect.isfunction(func) and hasattr(func, f"{hookspecs.PROJECT}_spec")
)


def test_there_are_hooks() -> None:
    assert {"register_app_parts", "register_commands", "register_harnesses"} <= set(HOOKS)


@pytest.mark.parametrize("name", HOOKS)
def test_hookspec_docstring_says_when_and_returns(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert "Called" in doc, f"{name}: say when the hook is called"
    assert ":return:" in doc or "Return value" in doc or "Return " in doc, f"{name}: say what it returns"
    assert "versionadded" in doc


@pytest.mark.parametrize("name", HOOKS)
def test_hookspec_is_synchronous(name: str) -> None:
    assert not inspect.iscoroutinefunction(getattr(hookspecs, name))


@pytest.mark.parametrize("name", HOOKS)
def test_hookspec_has_a_docs_section_with_its_signature(name: str) -> None:
    docs = (ROOT / "docs" / "plugins.md").read_text()
    params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
    assert f"### `{name}({params})`" in docs, f"docs/plugins.md needs a section for {name}({params})"


@pytest.mark.parametrize("name", HOOKS)
def test_hookspec_has_a_test(name: str) -> None:
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    assert re.search(rf"def test_hook_{name}\b", tests), f"add a test named test_hook_{name}"
