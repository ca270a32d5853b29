"""Where weights may come from: model roots enforced, hub ids offline, synthetic models built once."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.errors import BadRequest, CortexError, Forbidden, NotFound
from cortex_kernel.harness import HarnessContext
from cortex_transformers.sources import resolve_source
from tests.hubcache import cached_repo

if TYPE_CHECKING:
    from cortex_transformers.harness import TransformersHarness

pytestmark = pytest.mark.slow


def profile(source: str, model_id: str = "m", **fields: Any) -> ModelProfile:
    return ModelProfile(id=model_id, harness="transformers", source=source, min_devices=0, **fields)


async def test_relative_source_is_looked_up_under_the_roots(
    harness: TransformersHarness, tiny_chat_model: Path
) -> None:
    description = await harness.load(profile(tiny_chat_model.name))
    assert description.memory_bytes is not None
    assert description.task == "chat" and description.memory_bytes > 0
    assert harness.handles("m").model is not None


@pytest.mark.parametrize("source", ["../outside", "tiny-chat/../../outside", "../../../etc"])
async def test_dot_dot_escapes_are_forbidden(harness: TransformersHarness, source: str) -> None:
    with pytest.raises(Forbidden):
        await harness.load(profile(source))


async def test_dot_dot_that_stays_inside_a_root_is_fine(
    harness: TransformersHarness, tiny_chat_model: Path
) -> None:
    await harness.load(profile(f"{tiny_chat_model.name}/../{tiny_chat_model.name}"))


async def test_absolute_path_outside_the_roots_is_forbidden(
    harness: TransformersHarness, tiny_chat_model: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere" / "model"
    shutil.copytree(tiny_chat_model, outside)
    with pytest.raises(Forbidden):
        await harness.load(profile(str(outside)))


async def test_symlink_out_of_a_root_is_forbidden(
    harness: TransformersHarness, tiny_chat_model: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere" / "model"
    shutil.copytree(tiny_chat_model, outside)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "link").symlink_to(outside)
    with pytest.raises(Forbidden):
        await harness.load(profile("link"))


async def test_missing_directory_inside_a_root_is_not_found(
    harness: TransformersHarness, tiny_model_root: Path
) -> None:
    with pytest.raises(NotFound):
        await harness.load(profile(str(tiny_model_root / "no-such-model")))


async def test_without_roots_only_the_cache_dir_is_allowed(
    make_harness: Callable[[HarnessContext], TransformersHarness], tiny_chat_model: Path, tmp_path: Path
) -> None:
    harness = make_harness(HarnessContext(cache_dir=tmp_path / "cache"))
    with pytest.raises(Forbidden):
        await harness.load(profile(str(tiny_chat_model)))
    shutil.copytree(tiny_chat_model, tmp_path / "cache" / "copied")
    await harness.load(profile("copied"))


async def test_hub_id_offline_is_not_found_without_network(
    harness: TransformersHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NotFound):
        await harness.load(profile("cortex-kernel-tests/no-such-model"))


def test_hub_ids_and_bad_sources(tmp_path: Path) -> None:
    assert resolve_source("Qwen/Qwen3-0.6B", model_roots=(), cache_dir=tmp_path).hub_id == "Qwen/Qwen3-0.6B"
    assert resolve_source("gpt2", model_roots=(), cache_dir=tmp_path).hub_id == "gpt2"
    for bad in ("a b c", "org/name/extra", "", "x\x00y"):
        with pytest.raises(BadRequest):
            resolve_source(bad, model_roots=(), cache_dir=tmp_path)
    with pytest.raises(NotFound):
        resolve_source("./nothing-here", model_roots=(), cache_dir=tmp_path)


async def test_remote_code_is_not_run_unless_trusted(
    harness: TransformersHarness, tiny_chat_model: Path, tmp_path: Path
) -> None:
    model = tmp_path / "models" / "remote"
    shutil.copytree(tiny_chat_model, model)
    marker = tmp_path / "remote-code-ran"
    config = json.loads((model / "config.json").read_text())
    config.update(
        model_type="cortex-remote-test",
        auto_map={"AutoConfig": "configuration_remote.RemoteConfig"},
    )
    (model / "config.json").write_text(json.dumps(config))
    (model / "configuration_remote.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    with pytest.raises((BadRequest, NotFound)):
        await harness.load(profile("remote"))
    assert not marker.exists()


async def test_synthetic_sources_build_into_the_cache(
    harness: TransformersHarness, harness_context: HarnessContext
) -> None:
    description = await harness.load(profile("synthetic:tiny-chat"))
    assert description.context_length == 40960
    built = harness_context.cache_dir / "synthetic" / "tiny-chat"
    assert (built / "model.safetensors").is_file()
    with pytest.raises(NotFound, match="synthetic:tiny-chat"):
        await harness.load(profile("synthetic:no-such-model", model_id="other"))


async def test_unknown_devices_and_options_are_rejected(
    harness: TransformersHarness, tiny_chat_model: Path
) -> None:
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(Exception, match="CUDA") as caught:
            await harness.load(profile(str(tiny_chat_model), devices=[0]))
        assert isinstance(caught.value, CortexError)
        assert caught.value.status == 503
    with pytest.raises(BadRequest, match="dtype"):
        await harness.load(profile(str(tiny_chat_model), options={"dtype": "float8"}))
    with pytest.raises(BadRequest, match="device"):
        await harness.load(profile(str(tiny_chat_model), options={"device": "tpu"}))
    with pytest.raises(BadRequest, match="reasoning"):
        await harness.load(profile(str(tiny_chat_model), options={"reasoning": "maybe"}))


def _with_remote_code(model: Path, marker: Path) -> None:
    """Make ``model`` a checkpoint whose config asks for code that would create ``marker``."""
    config = json.loads((model / "config.json").read_text())
    config.update(
        model_type="cortex-remote-test", auto_map={"AutoConfig": "configuration_remote.RemoteConfig"}
    )
    (model / "config.json").write_text(json.dumps(config))
    (model / "configuration_remote.py").write_text(f"open({str(marker)!r}, 'w').close()\n")


async def test_a_hub_id_never_loads_from_the_working_directory(
    harness: TransformersHarness, tiny_chat_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # transformers tries a hub id as a directory first: "evil/model" must not mean ./evil/model.
    cwd = tmp_path / "cwd"
    shutil.copytree(tiny_chat_model, cwd / "evil" / "model")
    marker = tmp_path / "remote-code-ran"
    _with_remote_code(cwd / "evil" / "model", marker)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for trusted in (False, True):
        with pytest.raises(NotFound, match="hub cache"):
            await harness.load(profile("evil/model", trust_remote_code=trusted))
    assert not marker.exists()


async def test_a_hub_id_loads_from_its_snapshot_in_the_hub_cache(
    harness: TransformersHarness,
    harness_context: HarnessContext,
    tiny_chat_model: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached_repo(harness_context.cache_dir / "hub", "cortex-tests/tiny", tiny_chat_model)
    description = await harness.load(profile("cortex-tests/tiny"))
    assert description.task == "chat"
    for revision in ("../../../../etc", "/etc"):
        with pytest.raises(Forbidden):
            await harness.load(profile("cortex-tests/tiny", model_id="r", options={"revision": revision}))


@pytest.mark.parametrize(
    "source",
    [
        "/etc",
        "../outside",
        "file:///etc",
        f"file://{tempfile.gettempdir()}",
        "synthetic:../..",
        "synthetic:../../etc",
        "synthetic:tiny-chat/../..",
        "~root/models",
        "http://example.com/org/name",
        "a\\b",
    ],
)
def test_every_escape_is_source_not_allowed(source: str, tmp_path: Path) -> None:
    with pytest.raises(Forbidden) as caught:
        resolve_source(source, model_roots=(tmp_path,), cache_dir=tmp_path / "cache")
    assert (caught.value.status, caught.value.code) == (403, "source_not_allowed")


@pytest.mark.parametrize("source", ["x\x00y", "models/\x00", "a\nb", " "])
def test_a_malformed_source_is_invalid_source(source: str, tmp_path: Path) -> None:
    with pytest.raises(BadRequest) as caught:
        resolve_source(source, model_roots=(tmp_path,), cache_dir=tmp_path / "cache")
    assert (caught.value.status, caught.value.code) == (400, "invalid_source")
