"""Hub ids resolve to a snapshot inside the harness's own hub cache, online and (above all) offline.

Both harnesses resolve hub ids through :func:`cortex_transformers.sources.hub_snapshot`. Nothing
is downloaded here: offline lookups read a hub cache laid out by hand, and online calls go to a
test double of the hub.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from cortex_kernel.errors import BadRequest, CortexError, Forbidden, NotFound
from cortex_transformers.sources import hub_snapshot, wanted_files
from tests.hubcache import cached_repo

HUB_ID = "cortex-test/tiny-chat"


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A stand-in checkpoint directory: the lookup reads the cache layout, never the files."""
    directory = tmp_path / "checkpoint"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return directory


def test_offline_a_snapshot_in_the_cache_is_found_there(tmp_path: Path, checkpoint: Path) -> None:
    snapshot = cached_repo(tmp_path / "hub", HUB_ID, checkpoint)

    found = hub_snapshot(HUB_ID, hub_cache=tmp_path / "hub", revision=None, offline=True)

    assert found == snapshot and found.is_absolute()


def test_offline_a_relative_hub_cache_gives_the_absolute_snapshot(
    tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = cached_repo(tmp_path / "hub", HUB_ID, checkpoint)
    monkeypatch.chdir(tmp_path)

    assert hub_snapshot(HUB_ID, hub_cache=Path("hub"), revision=None, offline=True) == snapshot


def test_offline_a_model_missing_from_the_cache_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound) as caught:
        hub_snapshot(HUB_ID, hub_cache=tmp_path / "hub", revision=None, offline=True)

    assert caught.value.status == 404
    assert caught.value.code == "model_not_found"
    assert str(tmp_path / "hub") in caught.value.message
    assert "HF_HUB_OFFLINE" in caught.value.message


def test_a_snapshot_that_resolves_outside_the_cache_is_refused(tmp_path: Path, checkpoint: Path) -> None:
    snapshot = cached_repo(tmp_path / "hub", HUB_ID, checkpoint)
    for child in snapshot.iterdir():
        child.unlink()
    snapshot.rmdir()
    snapshot.symlink_to(checkpoint)  # a tampered cache

    with pytest.raises(Forbidden) as caught:
        hub_snapshot(HUB_ID, hub_cache=tmp_path / "hub", revision=None, offline=True)

    assert (caught.value.status, caught.value.code) == (403, "source_not_allowed")


def test_an_id_the_hub_refuses_as_malformed_is_a_client_error(tmp_path: Path) -> None:
    # Our shape check lets "a--b/c" through; huggingface_hub refuses it before any lookup.
    for offline in (True, False):
        with pytest.raises(BadRequest) as caught:
            hub_snapshot("a--b/c", hub_cache=tmp_path / "hub", revision=None, offline=offline)
        assert (caught.value.status, caught.value.code) == (400, "invalid_source")


class HubDouble:
    """A test double of the hub (nothing may be downloaded in tests): records the calls."""

    def __init__(self, files: list[str], result: str, error: Exception | None = None) -> None:
        self.files, self.result, self.error = files, result, error
        self.listed: list[tuple[str, str | None]] = []
        self.downloads: list[tuple[str, dict[str, Any]]] = []

    def list_repo_files(self, repo_id: str, revision: str | None = None) -> list[str]:
        self.listed.append((repo_id, revision))
        if self.error is not None:
            raise self.error
        return self.files

    def snapshot_download(self, repo_id: str, **kwargs: Any) -> str:
        self.downloads.append((repo_id, kwargs))
        return self.result


@pytest.fixture
def hub_double(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., HubDouble]:
    """Install a hub double where :func:`hub_snapshot` imports the hub client from."""
    import huggingface_hub

    def install(files: Iterable[str] = (), result: Path | None = None, **kwargs: Any) -> HubDouble:
        if result is None:
            result = tmp_path / "hub" / "models--x" / "snapshots" / "abc"
            result.mkdir(parents=True, exist_ok=True)
        double = HubDouble(list(files), str(result), **kwargs)
        monkeypatch.setattr(huggingface_hub, "HfApi", lambda: double)
        monkeypatch.setattr(huggingface_hub, "snapshot_download", double.snapshot_download)
        return double

    return install


def test_online_the_snapshot_is_downloaded_into_the_given_cache(
    hub_double: Callable[..., HubDouble], tmp_path: Path
) -> None:
    files = ["config.json", "model.safetensors", "pytorch_model.bin", "original/consolidated.pth"]
    double = hub_double(files)

    found = hub_snapshot(HUB_ID, hub_cache=tmp_path / "hub", revision="v1", offline=False)

    assert found == Path(double.result)
    assert double.listed == [(HUB_ID, "v1")]
    [(repo_id, kwargs)] = double.downloads
    assert repo_id == HUB_ID
    assert kwargs["cache_dir"] == str(tmp_path / "hub")
    assert kwargs["revision"] == "v1"
    assert "*.safetensors" in kwargs["allow_patterns"] and "*.bin" not in kwargs["allow_patterns"]
    assert "*.json" in kwargs["allow_patterns"]
    assert kwargs["ignore_patterns"] == ["original/*"]


def test_one_weight_format_is_downloaded_in_vllms_order_of_preference() -> None:
    assert wanted_files(["a.safetensors", "b.bin"])[-1] == "*.safetensors"
    assert wanted_files(["pytorch_model-00001-of-00002.bin", "config.json"])[-1] == "*.bin"
    assert wanted_files(["model.pt"])[-1] == "*.pt"


def test_online_a_download_outside_the_cache_is_refused(
    hub_double: Callable[..., HubDouble], tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    hub_double(["config.json"], result=elsewhere)

    with pytest.raises(Forbidden) as caught:
        hub_snapshot(HUB_ID, hub_cache=tmp_path / "hub", revision=None, offline=False)

    assert (caught.value.status, caught.value.code) == (403, "source_not_allowed")


@pytest.mark.parametrize("revision", ["../../../../etc", "/etc", "main\x00", "a/../../b"])
@pytest.mark.parametrize("offline", [True, False])
def test_a_path_shaped_revision_is_refused_before_the_hub_is_asked(
    hub_double: Callable[..., HubDouble], tmp_path: Path, revision: str, offline: bool
) -> None:
    double = hub_double(["config.json"])

    with pytest.raises(Forbidden) as caught:
        hub_snapshot(HUB_ID, hub_cache=tmp_path / "hub", revision=revision, offline=offline)

    assert (caught.value.status, caught.value.code) == (403, "source_not_allowed")
    assert double.listed == [] and double.downloads == []


def test_hub_failures_are_client_errors_or_a_retryable_unavailability(
    hub_double: Callable[..., HubDouble], tmp_path: Path
) -> None:
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    class Response:  # what the hub's HTTP errors carry; the double needs only this much
        status_code, headers, request, url = 404, dict[str, str](), None, "https://huggingface.co"

    def raised(error: Exception, kind: type[CortexError]) -> CortexError:
        hub_double(error=error)
        with pytest.raises(kind) as caught:
            hub_snapshot(HUB_ID, hub_cache=tmp_path / "hub", revision=None, offline=False)
        return caught.value

    # Response() stands in for the hub's httpx.Response: hence the ignores of arg-type below.
    missing = raised(RepositoryNotFoundError("no", response=Response()), NotFound)  # type: ignore[arg-type]
    assert (missing.status, missing.code) == (404, "model_not_found")
    assert raised(RevisionNotFoundError("no", response=Response()), NotFound).status == 404  # type: ignore[arg-type]
    gated = raised(GatedRepoError("gated", response=Response()), Forbidden)  # type: ignore[arg-type]
    assert (gated.status, gated.code) == (403, "source_not_allowed")
    for error in (ConnectionError("no route to host"), LocalEntryNotFoundError("hub went away"), OSError(28)):
        unavailable = raised(error, CortexError)
        assert (unavailable.status, unavailable.code) == (503, "hub_unavailable")
