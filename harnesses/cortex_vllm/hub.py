"""A hub id as a local snapshot directory in the harness's own hub cache.

vLLM takes a hub id and a ``download_dir``, but honours that directory for the weights only: it
reads the config, the tokenizer and the chat template through the default Hugging Face cache,
and with ``HF_HUB_OFFLINE=1`` it resolves the id against the default cache alone. A model the
harness downloaded earlier into ``<cache_dir>/hub`` (or ``hub_cache_dir``) was then not found on
an air-gapped host. So the harness resolves a hub id itself, into one cache it names: online it
downloads the snapshot there (the files vLLM would read, see :func:`wanted_files`), offline it
looks the snapshot up there without any network, and either way vLLM gets a local directory.
"""

from __future__ import annotations

import fnmatch
import logging

from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from cortex_kernel.errors import CortexError, Forbidden, NotFound

log = logging.getLogger(__name__)

# Everything but the weights that vLLM (through transformers) may read from a model repository:
# configs, tokenizer files (sentencepiece, tiktoken, vocabularies, merges), chat templates and,
# for ``trust_remote_code`` models, their code (downloaded, run only when the profile says so).
METADATA_PATTERNS = ("*.json", "*.model", "*.tiktoken", "*.txt", "*.jinja", "*.py")
# Weight formats in vLLM's order of preference for its default load format: the first a
# repository has is the one downloaded, so a repository with both never costs twice the disk.
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt")
# Alternative checkpoints some repositories carry beside the transformers one (Meta's
# ``original/``); vLLM skips them too.
IGNORED_PATTERNS = ("original/*",)


def wanted_files(repo_files: list[str]) -> list[str]:
    """``allow_patterns`` for a repository holding ``repo_files``: metadata plus one weight format."""
    weights = next(
        (pattern for pattern in WEIGHT_PATTERNS if fnmatch.filter(repo_files, pattern)), WEIGHT_PATTERNS[0]
    )
    return [*METADATA_PATTERNS, weights]


def local_snapshot(hub_id: str, cache_dir: str, *, offline: bool) -> str:
    """The directory of ``hub_id``'s snapshot in ``cache_dir``, downloading it first unless ``offline``.

    Blocking (network and disk): call it from a thread.

    :raises NotFound: offline and not in ``cache_dir``, or no such repository or revision.
    :raises Forbidden: a gated repository this host has no access to.
    :raises CortexError: (503 ``hub_unavailable``) the hub could not be reached or failed.
    """
    try:
        if offline:
            return str(snapshot_download(hub_id, cache_dir=cache_dir, local_files_only=True))
        files = HfApi().list_repo_files(hub_id)
        log.info("downloading %s into %s", hub_id, cache_dir)
        return str(
            snapshot_download(
                hub_id,
                cache_dir=cache_dir,
                allow_patterns=wanted_files(files),
                ignore_patterns=list(IGNORED_PATTERNS),
            )
        )
    except LocalEntryNotFoundError as exc:
        raise NotFound(
            f"model {hub_id!r} is not in the hub cache {cache_dir!r}, and HF_HUB_OFFLINE forbids "
            "downloading it",
            code="model_not_found",
        ) from exc
    except GatedRepoError as exc:
        raise Forbidden(
            f"model {hub_id!r} is gated on the hub and this host has no access to it", code="source_not_allowed"
        ) from exc
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise NotFound(f"model {hub_id!r} does not exist on the hub", code="model_not_found") from exc
    except Exception as exc:  # HfHubHTTPError, httpx or requests errors, a full disk
        raise CortexError(
            f"the hub could not provide model {hub_id!r}: {type(exc).__name__}: {exc}",
            status=503,
            code="hub_unavailable",
        ) from exc
