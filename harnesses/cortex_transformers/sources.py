"""Where a profile's weights come from: a synthetic model, a local directory, or a hub id.

The rule itself is the kernel's (:mod:`cortex_kernel.sources`): local directories are accepted
only when they resolve (symlinks followed) inside one of the neuron's ``model_roots`` or the
harness cache directory; relative sources are looked up under each root in turn; anything else
shaped like ``org/name`` is a Hugging Face hub id.

A hub id is never handed to ``from_pretrained`` (or vLLM) as it is: both try it as a directory
relative to the working directory first, so ``org/name`` would load ``./org/name`` from wherever
the neuron runs. :func:`hub_snapshot` turns it into the absolute snapshot directory inside the
hub cache (downloading it unless offline), and that directory is what the engine reads.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cortex_kernel.errors import CortexError, NotFound
from cortex_kernel.sources import inside, locate_source, not_allowed
from cortex_transformers.synthetic import SYNTHETIC_MODELS, SYNTHETIC_PREFIX, resolve_synthetic

_TRUE = frozenset({"1", "true", "yes", "on"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What a checkpoint needs beside its weights: configs, tokenizers, chat templates, remote code.
_METADATA = ["*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja", "*.py"]


@dataclass(frozen=True)
class WeightsSource:
    """A resolved source: exactly one of ``path`` (local directory) and ``hub_id`` is set."""

    path: Path | None = None
    hub_id: str | None = None

    @property
    def location(self) -> str:
        """The directory, or the hub id (only for messages: resolve it with :func:`hub_snapshot`)."""
        return str(self.path) if self.path is not None else str(self.hub_id)


def hub_offline() -> bool:
    """Whether the environment forbids hub downloads (``HF_HUB_OFFLINE``, read at each load)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def resolve_source(source: str, *, model_roots: tuple[Path, ...], cache_dir: Path) -> WeightsSource:
    """Resolve ``source`` to a local directory or a hub id, enforcing the roots.

    :raises Forbidden: (``source_not_allowed``) a source outside every root (absolute, ``..``,
        a symlink escape, a URL, a synthetic name with path characters).
    :raises NotFound: a local path or synthetic name that does not exist.
    :raises BadRequest: a source that is neither a path nor a hub id, or holds a NUL.
    """
    located = locate_source(source, roots=(*model_roots, cache_dir))
    if located.synthetic is not None:
        if located.synthetic not in SYNTHETIC_MODELS:
            known = ", ".join(SYNTHETIC_PREFIX + n for n in sorted(SYNTHETIC_MODELS))
            raise NotFound(f"unknown synthetic model {source!r} (known: {known})", code="model_not_found")
        return WeightsSource(path=resolve_synthetic(source, cache_dir))
    if located.hub_id is not None:
        return WeightsSource(hub_id=located.hub_id)
    return WeightsSource(path=located.path)


def hub_snapshot(hub_id: str, *, hub_cache: Path, revision: str | None, offline: bool) -> Path:
    """The absolute snapshot directory of ``hub_id`` inside ``hub_cache``, fetched unless offline.

    Safetensors weights are preferred; ``*.bin`` weights are fetched only for a repository
    without any, so a repository carrying both is not downloaded twice.

    :raises NotFound: the repository, revision or (offline) its cached snapshot does not exist.
    :raises Forbidden: a revision shaped like a path, or a snapshot that resolves outside
        ``hub_cache`` (a tampered cache).
    """
    if revision is not None and (".." in revision or revision.startswith("/") or _CONTROL.search(revision)):
        # huggingface_hub joins the revision into a path under the cache to read the ref.
        raise not_allowed(f"revision {revision!r} is not a branch, tag or commit", param="options.revision")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    def fetch(weights: str) -> Path:
        return Path(
            snapshot_download(
                hub_id,
                revision=revision,
                cache_dir=str(hub_cache),
                local_files_only=offline,
                allow_patterns=[*_METADATA, weights],
            )
        )

    try:
        snapshot = fetch("*.safetensors")
        if not offline and not any(snapshot.glob("*.safetensors")):
            snapshot = fetch("*.bin")
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
        where = "in the hub cache (offline)" if offline else "on the hub"
        raise NotFound(
            f"model {hub_id!r} is not in any model root nor {where}: {type(exc).__name__}",
            code="model_not_found",
        ) from exc
    if not snapshot.is_absolute() or not inside(snapshot, [hub_cache]):
        raise not_allowed(f"the hub cache's snapshot of {hub_id!r} resolves outside {hub_cache}")
    if not snapshot.is_dir():
        raise CortexError(f"the hub cache has no directory for {hub_id!r}", code="load_failed")
    return snapshot
