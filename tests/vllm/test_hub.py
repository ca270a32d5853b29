"""Hub ids resolve to a snapshot in the harness's own hub cache, online and (above all) offline."""

from __future__ import annotations

import pytest

pytest.importorskip("vllm", reason="vllm is not installed")

from cortex_kernel.errors import CortexError, Forbidden, NotFound
from cortex_vllm import hub
from cortex_vllm.hub import local_snapshot, wanted_files
from tests.vllm.conftest import HUB_ID, fill_hub_cache


def test_offline_a_snapshot_in_the_cache_is_found_there(tmp_path, tiny_chat_model):
    snapshot = fill_hub_cache(tmp_path / "hub", tiny_chat_model)

    assert local_snapshot(HUB_ID, str(tmp_path / "hub"), offline=True) == str(snapshot)


def test_offline_a_model_missing_from_the_cache_is_not_found(tmp_path):
    with pytest.raises(NotFound) as caught:
        local_snapshot(HUB_ID, str(tmp_path / "hub"), offline=True)

    assert caught.value.status == 404
    assert caught.value.code == "model_not_found"
    assert str(tmp_path / "hub") in caught.value.message
    assert "HF_HUB_OFFLINE" in caught.value.message


class HubDouble:
    """A test double of the hub (nothing may be downloaded in tests): records the calls."""

    def __init__(self, files, result="/snapshot", error=None):
        self.files, self.result, self.error = files, result, error
        self.downloads = []

    def list_repo_files(self, repo_id):
        if self.error is not None:
            raise self.error
        return self.files

    def snapshot_download(self, repo_id, **kwargs):
        self.downloads.append((repo_id, kwargs))
        return self.result


@pytest.fixture
def hub_double(monkeypatch):
    def install(files=(), **kwargs):
        double = HubDouble(list(files), **kwargs)
        monkeypatch.setattr(hub, "HfApi", lambda: double)
        monkeypatch.setattr(hub, "snapshot_download", double.snapshot_download)
        return double

    return install


def test_online_the_snapshot_is_downloaded_into_the_given_cache(hub_double, tmp_path):
    files = ["config.json", "model.safetensors", "pytorch_model.bin", "original/consolidated.pth"]
    double = hub_double(files)

    assert local_snapshot(HUB_ID, str(tmp_path), offline=False) == "/snapshot"

    [(repo_id, kwargs)] = double.downloads
    assert repo_id == HUB_ID
    assert kwargs["cache_dir"] == str(tmp_path)
    assert "*.safetensors" in kwargs["allow_patterns"] and "*.bin" not in kwargs["allow_patterns"]
    assert "*.json" in kwargs["allow_patterns"]
    assert kwargs["ignore_patterns"] == ["original/*"]


def test_one_weight_format_is_downloaded_in_vllms_order_of_preference():
    assert wanted_files(["a.safetensors", "b.bin"])[-1] == "*.safetensors"
    assert wanted_files(["pytorch_model-00001-of-00002.bin", "config.json"])[-1] == "*.bin"
    assert wanted_files(["model.pt"])[-1] == "*.pt"


def test_hub_failures_are_client_errors_or_a_retryable_unavailability(hub_double, tmp_path):
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    class Response:  # what the hub's HTTP errors carry; the double needs only this much
        status_code, headers, request, url = 404, {}, None, "https://huggingface.co"

    def raised(error, kind):
        hub_double(error=error)
        with pytest.raises(kind) as caught:
            local_snapshot(HUB_ID, str(tmp_path), offline=False)
        return caught.value

    assert raised(RepositoryNotFoundError("no", response=Response()), NotFound).status == 404
    assert raised(GatedRepoError("gated", response=Response()), Forbidden).status == 403
    unreachable = raised(ConnectionError("no route to host"), CortexError)
    assert (unreachable.status, unreachable.code) == (503, "hub_unavailable")
