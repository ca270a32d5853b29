"""Where a model's weights may be read from: the one rule the neuron and every harness apply.

A profile's ``source`` reaches the neuron from the network (an inline profile in
``POST /models/load``), so it is untrusted input that names files. The rule: a source is either
``synthetic:NAME``, a directory that resolves (symlinks followed) inside one of the allowed roots
(the neuron's ``model_roots`` and the harness cache directory), or a hub id that the harness
resolves inside its own hub cache. Nothing is ever looked up relative to the working directory:
libraries such as transformers and vLLM try ``os.path.isdir(source)`` before treating a string
as a hub id, so a hub id handed to them unresolved would load ``./org/name`` from wherever the
daemon runs. Harnesses therefore turn a hub id into an absolute snapshot directory first.

Escapes (an absolute path, ``..``, a symlink out of a root, a URL, a synthetic name with path
characters) are ``403 source_not_allowed``; a malformed source (empty, NUL or another control
character) is ``400 invalid_source``; a path inside a root that does not exist is ``404``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cortex_kernel.errors import BadRequest, Forbidden, NotFound

SOURCE_NOT_ALLOWED = "source_not_allowed"
SYNTHETIC_PREFIX = "synthetic:"

# A hub repository id: "name" or "org/name", no "." or ".." segment (the hub forbids both).
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
_SYNTHETIC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class LocatedSource:
    """What a source names: exactly one of a local directory, a hub id and a synthetic name."""

    path: Path | None = None
    hub_id: str | None = None
    synthetic: str | None = None


def not_allowed(message: str, param: str = "source") -> Forbidden:
    """The 403 every part of the trust boundary answers with."""
    return Forbidden(message, code=SOURCE_NOT_ALLOWED, param=param)


def inside(path: Path, roots: Sequence[Path]) -> bool:
    """Whether ``path`` resolves (symlinks followed) to one of ``roots`` or below one."""
    real = path.resolve()
    for root in roots:
        base = root.expanduser().resolve()
        if real == base or base in real.parents:
            return True
    return False


def is_hub_id(source: str) -> bool:
    """Whether ``source`` has the shape of a hub repository id (``name`` or ``org/name``)."""
    return bool(_HUB_ID.match(source)) and ".." not in source


def locate_source(source: str, *, roots: Sequence[Path]) -> LocatedSource:
    """Decide what ``source`` names, looking only inside ``roots``.

    Relative paths are looked up under each root in turn; one that resolves out of a root
    (``..``, a symlink) is refused even when another root would have had it. A relative source
    found under no root is a hub id when it is shaped like one, never a path in the working
    directory.

    :raises BadRequest: (``invalid_source``) empty, a control character, or neither a path nor a hub id.
    :raises Forbidden: (``source_not_allowed``) anything outside ``roots``.
    :raises NotFound: (``model_not_found``) a path inside the roots that is not a directory.
    """
    if not source.strip() or _CONTROL.search(source):
        raise BadRequest(f"invalid model source {source!r}", code="invalid_source", param="source")
    if source.startswith(SYNTHETIC_PREFIX):
        name = source.removeprefix(SYNTHETIC_PREFIX)
        if not _SYNTHETIC_NAME.match(name) or ".." in name:
            raise not_allowed(
                f"synthetic model name {name!r} may only hold letters, digits, '.', '-' and '_'"
            )
        return LocatedSource(synthetic=name)
    if "://" in source or source.lower().startswith("file:") or "\\" in source:
        raise not_allowed(f"model source {source!r} is not a directory under the model roots or a hub id")
    allowed = [root.expanduser().resolve() for root in roots]
    try:
        given = Path(source).expanduser()
    except RuntimeError:  # "~user" for a user that does not exist
        raise not_allowed(f"model source {source!r} is outside this neuron's model roots") from None
    if given.is_absolute():
        if not inside(given, allowed):
            raise not_allowed(f"model source {source!r} is outside this neuron's model roots")
        if not given.resolve().is_dir():
            raise NotFound(f"model directory {source!r} does not exist", code="model_not_found")
        return LocatedSource(path=given.resolve())
    for root in allowed:
        candidate = root / given
        if not inside(candidate, [root]):
            raise not_allowed(f"model source {source!r} escapes the model roots")
        if candidate.resolve().is_dir():
            return LocatedSource(path=candidate.resolve())
    if is_hub_id(source):
        return LocatedSource(hub_id=source)
    if source.startswith(".") or ".." in given.parts:
        raise NotFound(f"model directory {source!r} does not exist in any model root", code="model_not_found")
    raise BadRequest(
        f"model source {source!r} is neither a directory under the model roots nor a hub id",
        code="invalid_source",
        param="source",
    )
