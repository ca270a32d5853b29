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

import fnmatch
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cortex_kernel.errors import BadRequest, CortexError, NotFound
from cortex_kernel.sources import inside, locate_source, not_allowed
from cortex_transformers.synthetic import SYNTHETIC_MODELS, SYNTHETIC_PREFIX, resolve_synthetic

log = logging.getLogger(__name__)

_TRUE = frozenset({"1", "true", "yes", "on"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Everything but the weights that an engine (through transformers) may read from a model
# repository: configs, tokenizer files (sentencepiece, tiktoken, vocabularies, merges), chat
# templates and, for ``trust_remote_code`` models, their code (downloaded; run only when the
# profile says so).
METADATA_PATTERNS = ("*.json", "*.model", "*.tiktoken", "*.txt", "*.jinja", "*.py")
# Weight formats in vLLM's order of preference for its default load format (transformers reads
# the first two in the same order): the first a repository has is the one downloaded, so a
# repository with several never costs their sum in disk and time.
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt")
# Alternative checkpoints some repositories carry beside the transformers one (Meta's
# ``original/``); neither engine reads them.
IGNORED_PATTERNS = ("original/*",)


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


def wanted_files(repo_files: list[str]) -> list[str]:
    """``allow_patterns`` for a repository holding ``repo_files``: metadata plus one weight format."""
    weights = next(
        (pattern for pattern in WEIGHT_PATTERNS if fnmatch.filter(repo_files, pattern)), WEIGHT_PATTERNS[0]
    )
    return [*METADATA_PATTERNS, weights]


def hub_snapshot(hub_id: str, *, hub_cache: Path, revision: str | None, offline: bool) -> Path:
    """The absolute snapshot directory of ``hub_id`` inside ``hub_cache``, fetched unless offline.

    Online it lists the repository (at ``revision``) and downloads the metadata and one weight
    format (see :func:`wanted_files`) into ``hub_cache``; offline it only looks there. Either way
    the engine gets a local directory, so a model downloaded once is found again on an
    air-gapped host. Blocking (network and disk): call it from a thread.

    :raises Forbidden: (``source_not_allowed``) a revision shaped like a path, a gated
        repository this host has no access to, or a snapshot that resolves outside ``hub_cache``
        (a tampered cache).
    :raises NotFound: (``model_not_found``) offline and not in ``hub_cache``, or no such
        repository or revision on the hub.
    :raises BadRequest: (``invalid_source``) an id the hub refuses as malformed.
    :raises CortexError: (503 ``hub_unavailable``) the hub could not be reached or failed.
    """
    if revision is not None and (".." in revision or revision.startswith("/") or _CONTROL.search(revision)):
        # huggingface_hub joins the revision into a path under the cache to read the ref.
        raise not_allowed(f"revision {revision!r} is not a branch, tag or commit", param="options.revision")
    # Imported here: huggingface_hub's client costs several times this module's import, and it
    # fixes HF_HUB_OFFLINE when imported; only loading a hub model needs it.
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    hub_cache = hub_cache.expanduser().absolute()
    try:
        if offline:
            fetched = snapshot_download(
                hub_id, revision=revision, cache_dir=str(hub_cache), local_files_only=True
            )
        else:
            files = HfApi().list_repo_files(hub_id, revision=revision)
            log.info("downloading %s into %s", hub_id, hub_cache)
            fetched = snapshot_download(
                hub_id,
                revision=revision,
                cache_dir=str(hub_cache),
                allow_patterns=wanted_files(files),
                ignore_patterns=list(IGNORED_PATTERNS),
            )
    except LocalEntryNotFoundError as exc:
        if not offline:  # online, snapshot_download says so when the hub went away mid-way
            raise _unavailable(hub_id, exc) from exc
        raise NotFound(
            f"model {hub_id!r} is not in the hub cache {str(hub_cache)!r}, and offline mode "
            "(HF_HUB_OFFLINE or the 'offline' option) forbids downloading it",
            code="model_not_found",
        ) from exc
    except GatedRepoError as exc:  # before its base class, RepositoryNotFoundError
        raise not_allowed(f"model {hub_id!r} is gated on the hub and this host has no access to it") from exc
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise NotFound(f"model {hub_id!r} does not exist on the hub", code="model_not_found") from exc
    except HFValidationError as exc:  # an id our shape check lets through, such as "a--b/c"
        raise BadRequest(
            f"{hub_id!r} is not a valid hub id: {exc}", code="invalid_source", param="source"
        ) from exc
    except Exception as exc:  # HfHubHTTPError, httpx or requests errors, a full disk
        raise _unavailable(hub_id, exc) from exc
    snapshot = Path(fetched)
    if not snapshot.is_absolute() or not inside(snapshot, [hub_cache]):
        raise not_allowed(f"the hub cache's snapshot of {hub_id!r} resolves outside {hub_cache}")
    if not snapshot.is_dir():
        raise CortexError(f"the hub cache has no directory for {hub_id!r}", code="load_failed")
    return snapshot


def _unavailable(hub_id: str, exc: BaseException) -> CortexError:
    return CortexError(
        f"the hub could not provide model {hub_id!r}: {type(exc).__name__}: {exc}",
        status=503,
        code="hub_unavailable",
    )
