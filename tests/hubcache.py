"""A hub cache laid out on disk by hand, so hub ids resolve offline without any download."""

from __future__ import annotations

import shutil
from pathlib import Path

FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cached_repo(hub_cache: Path, repo_id: str, checkpoint: Path) -> Path:
    """Place a copy of ``checkpoint`` as the ``main`` snapshot of ``repo_id``; return its directory.

    The layout is huggingface_hub's (``models--ORG--NAME/refs/main`` naming a commit whose
    ``snapshots/COMMIT`` directory holds the files), which is all an offline lookup reads.
    """
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(FAKE_COMMIT)
    snapshot = repo / "snapshots" / FAKE_COMMIT
    shutil.copytree(checkpoint, snapshot, dirs_exist_ok=True)
    return snapshot
