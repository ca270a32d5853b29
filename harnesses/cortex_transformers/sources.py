"""Where a profile's weights come from: a synthetic model, a local directory, or a hub id.

A profile's ``source`` is operator configuration, but it still must not become a way to read
arbitrary files: local directories are accepted only when they resolve (symlinks followed) inside
one of the neuron's ``model_roots`` or the harness cache directory, as the
:class:`~cortex_kernel.harness.HarnessContext` contract says. Relative sources are looked up under
each root in turn; a ``..`` that climbs out of a root is refused, not silently followed.

Anything else shaped like ``org/name`` is a Hugging Face hub id, loaded through the hub cache,
without network access when ``HF_HUB_OFFLINE`` is set.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cortex_kernel.errors import BadRequest, Forbidden, NotFound
from cortex_transformers.synthetic import SYNTHETIC_MODELS, SYNTHETIC_PREFIX, is_synthetic, resolve_synthetic

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9_.-]+)?$")
_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True)
class WeightsSource:
    """A resolved source: exactly one of ``path`` (local directory) and ``hub_id`` is set."""

    path: Path | None = None
    hub_id: str | None = None

    @property
    def location(self) -> str:
        """What to hand ``from_pretrained``."""
        return str(self.path) if self.path is not None else str(self.hub_id)


def hub_offline() -> bool:
    """Whether the environment forbids hub downloads (``HF_HUB_OFFLINE``, read at each load)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def resolve_source(source: str, *, model_roots: tuple[Path, ...], cache_dir: Path) -> WeightsSource:
    """Resolve ``source`` to a local directory or a hub id, enforcing the roots.

    :raises Forbidden: a local path outside every root (absolute, ``..`` or a symlink escape).
    :raises NotFound: a local path or synthetic name that does not exist.
    :raises BadRequest: a source that is neither a path nor a hub id.
    """
    if "\x00" in source or not source.strip():
        raise BadRequest(f"invalid model source {source!r}", code="invalid_source")
    if is_synthetic(source):
        name = source.removeprefix(SYNTHETIC_PREFIX)
        if name not in SYNTHETIC_MODELS:
            known = ", ".join(SYNTHETIC_PREFIX + n for n in sorted(SYNTHETIC_MODELS))
            raise NotFound(f"unknown synthetic model {source!r} (known: {known})", code="model_not_found")
        return WeightsSource(path=resolve_synthetic(source, cache_dir))

    allowed = [root.expanduser().resolve() for root in (*model_roots, cache_dir)]
    given = Path(source).expanduser()
    if given.is_absolute():
        real = given.resolve()
        if not any(_inside(real, root) for root in allowed):
            raise Forbidden(
                f"model source {source!r} is outside the configured model roots", code="source_forbidden"
            )
        if not real.is_dir():
            raise NotFound(f"model directory {source!r} does not exist", code="model_not_found")
        return WeightsSource(path=real)

    for root in allowed:
        candidate = (root / given).resolve()
        if not _inside(candidate, root):
            raise Forbidden(f"model source {source!r} escapes the model roots", code="source_forbidden")
        if candidate.is_dir():
            return WeightsSource(path=candidate)

    if ".." in given.parts or source.startswith((".", "~")):
        raise NotFound(f"model directory {source!r} does not exist in any model root", code="model_not_found")
    if _HUB_ID.match(source):
        return WeightsSource(hub_id=source)
    raise BadRequest(
        f"model source {source!r} is neither a directory under the model roots nor a hub id",
        code="invalid_source",
    )
