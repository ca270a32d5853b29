"""The kernel names no dialect, router or console in its code: those are plugins' own business.

Documentation may name them as examples (docstrings and comments are not code); identifiers,
imports and string literals may not, so a plugin's configuration or behaviour cannot creep back
into the kernel unnoticed. ``starlette.responses`` is Starlette's module, not the dialect.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import msgspec

from cortex_kernel.config.schema import CortexConfig, RoutingSection

KERNEL = Path(__file__).resolve().parents[2] / "cortex_kernel"
PLUGIN_WORDS = re.compile(r"responses|console|affinity|kv_aware|anthropic", re.IGNORECASE)


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _code_words(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    docs = _docstrings(tree)
    words = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "starlette.responses":
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            words.append(node.value)
        elif isinstance(node, ast.Name):
            words.append(node.id)
        elif isinstance(node, ast.Attribute):
            words.append(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            words.append(node.name)
        elif isinstance(node, ast.arg):
            words.append(node.arg)
        elif isinstance(node, ast.ImportFrom):
            words.extend([node.module or "", *(alias.name for alias in node.names)])
        elif isinstance(node, ast.Import):
            words.extend(alias.name for alias in node.names)
    return [f"{path.relative_to(KERNEL.parent)}: {w!r}" for w in words if PLUGIN_WORDS.search(w)]


def test_kernel_code_names_no_plugin() -> None:
    found = [hit for path in sorted(KERNEL.rglob("*.py")) for hit in _code_words(path)]
    assert not found, found


def test_the_kernel_schema_holds_no_plugin_table() -> None:
    cortex = {f.name for f in msgspec.structs.fields(CortexConfig)}
    routing = {f.name for f in msgspec.structs.fields(RoutingSection)}
    assert not cortex & {"responses", "console"}
    assert routing == {"strategy", "session_headers", "request_class_header", "fingerprint_bytes"}
