"""The vLLM harness over ``ScriptedAsyncLLM``: lifecycle, streaming, aborts, locks and memory checks."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("vllm", reason="vllm is not installed")

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.errors import BadRequest, Conflict, CortexError, Forbidden, NotFound
from cortex_kernel.harness import Harness, HarnessContext
from cortex_kernel.openai_wire import ChatRequest, CompletionRequest
from cortex_vllm.harness import cuda_initialized_here
from tests.deltas import collect
from tests.hubcache import FAKE_COMMIT, cached_repo
from tests.vllm.conftest import HUB_ID
from tests.vllm.scripted import GIB


def chat(model: str = "tiny-vllm", content: str = "Say hello.", **fields: Any) -> ChatRequest:
    return ChatRequest(model=model, messages=[{"role": "user", "content": content}], **fields)


def variant(profile: ModelProfile, **changes: Any) -> ModelProfile:
    fields = {name: getattr(profile, name) for name in profile.__struct_fields__}
    return ModelProfile(**{**fields, **changes})


@pytest.fixture(autouse=True)
def _no_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


async def test_load_starts_one_engine_and_describes_the_model(
    harness: Any, scripted: Any, vllm_profile: ModelProfile
) -> None:
    assert isinstance(harness, Harness)
    described = await harness.load(vllm_profile)
    await harness.load(vllm_profile)
    assert len(scripted.engines) == 1
    assert described.context_length == 4096
    assert described.devices == [0]
    assert described.memory_bytes == 2 * GIB  # what NVML saw appear while the engine started
    assert {"chat", "completions", "tools", "reasoning"} <= set(described.capabilities)
    args = scripted.last.args
    assert args.served_model_name == ["tiny-vllm"]
    assert args.max_model_len == 4096
    assert args.enable_sleep_mode is True


async def test_a_chat_streams_with_exact_usage(
    harness: Any, scripted: Any, vllm_profile: ModelProfile
) -> None:
    scripted.script.reply = "Hello there, friend."
    scripted.script.cached_tokens = 6
    await harness.load(vllm_profile)
    request = chat(max_tokens=50, temperature=0.2)
    deltas = await collect(harness.chat("tiny-vllm", request))
    text = "".join(d.text + d.reasoning for d in deltas)
    assert text.strip() == "Hello there, friend."
    final = deltas[-1]
    assert final.finish_reason == "stop"
    assert final.usage is not None
    assert final.usage.prompt_tokens == await harness.count_tokens("tiny-vllm", request)
    assert final.usage.cached_tokens == 6
    _, prompt, params, kwargs = scripted.last.generated[-1]
    rendered = scripted.last.get_tokenizer().decode(prompt["prompt_token_ids"])
    assert rendered.endswith("<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n")
    assert (params.max_tokens, params.temperature) == (50, 0.2)
    assert "reasoning_ended" in kwargs


async def test_a_reply_cut_by_max_tokens_finishes_with_length(
    harness: Any, vllm_profile: ModelProfile
) -> None:
    await harness.load(vllm_profile)
    deltas = await collect(harness.chat("tiny-vllm", chat(max_tokens=5)))
    assert deltas[-1].finish_reason == "length"
    usage = deltas[-1].usage
    assert usage is not None
    assert usage.completion_tokens == 5


async def test_closing_the_stream_aborts_the_request(
    harness: Any, scripted: Any, vllm_profile: ModelProfile
) -> None:
    scripted.script.step_s = 0.01
    await harness.load(vllm_profile)
    stream = harness.chat("tiny-vllm", chat(max_tokens=400))
    await stream.__anext__()
    await stream.aclose()
    request_id = scripted.last.generated[-1][0]
    assert request_id in scripted.last.aborted
    assert scripted.last.get_num_unfinished_requests() == 0


async def test_cancelling_the_consumer_aborts_the_request(
    harness: Any, scripted: Any, vllm_profile: ModelProfile
) -> None:
    scripted.script.step_s = 0.01
    await harness.load(vllm_profile)
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in harness.chat("tiny-vllm", chat(max_tokens=400)):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert scripted.last.generated[-1][0] in scripted.last.aborted


async def test_sleep_and_wake_use_vllm_sleep_mode(
    harness: Any, scripted: Any, vllm_profile: ModelProfile
) -> None:
    await harness.load(vllm_profile)
    await harness.sleep("tiny-vllm")
    await harness.sleep("tiny-vllm")  # idempotent
    asleep = harness.describe("tiny-vllm")
    assert asleep.devices == []
    assert asleep.memory_bytes == GIB // 4
    with pytest.raises(Conflict) as caught:
        await collect(harness.chat("tiny-vllm", chat()))
    assert caught.value.code == "model_sleeping"
    assert await harness.count_tokens("tiny-vllm", chat()) > 0
    assert harness.engine_stats("tiny-vllm")["sleeping"] == 1.0
    await harness.wake("tiny-vllm")
    assert scripted.last.calls == ["sleep(1)", "wake_up(['weights'])", "wake_up(['kv_cache'])"]
    awake = harness.describe("tiny-vllm")
    assert (awake.devices, awake.memory_bytes) == ([0], 2 * GIB)
    assert (await collect(harness.chat("tiny-vllm", chat(max_tokens=3))))[-1].finish_reason == "length"


async def test_sleep_ends_an_in_flight_stream_with_a_conflict(
    harness: Any, scripted: Any, vllm_profile: ModelProfile
) -> None:
    scripted.script.step_s = 0.01
    await harness.load(vllm_profile)
    stream = harness.chat("tiny-vllm", chat(max_tokens=400))
    await stream.__anext__()
    await harness.sleep("tiny-vllm")
    with pytest.raises(Conflict):
        await collect(stream)


async def test_a_model_loaded_without_sleep_mode_cannot_sleep(
    harness: Any, vllm_profile: ModelProfile
) -> None:
    await harness.load(variant(vllm_profile, options={"sleep_mode": False}))
    with pytest.raises(BadRequest) as caught:
        await harness.sleep("tiny-vllm")
    assert caught.value.code == "sleep_not_supported"


async def test_unload_shuts_the_engine_down_and_the_memory_comes_back(
    harness: Any, scripted: Any, vllm_profile: ModelProfile
) -> None:
    await harness.load(vllm_profile)
    engine = scripted.last
    await harness.unload("tiny-vllm")
    await harness.unload("tiny-vllm")  # a model that is not loaded: a no-op
    assert engine.calls == ["shutdown"]
    assert scripted.probe.used[0] == GIB
    with pytest.raises(NotFound):
        harness.describe("tiny-vllm")


async def test_unload_ends_in_flight_streams_with_not_found(
    harness: Any, scripted: Any, vllm_profile: ModelProfile
) -> None:
    scripted.script.step_s = 0.01
    await harness.load(vllm_profile)
    stream = harness.chat("tiny-vllm", chat(max_tokens=400))
    await stream.__anext__()
    await harness.unload("tiny-vllm")
    with pytest.raises(NotFound):
        await collect(stream)


async def test_unload_reports_memory_nvml_does_not_see_released(
    harness: Any, scripted: Any, vllm_profile: ModelProfile
) -> None:
    scripted.script.leak_on_shutdown = True
    await harness.load(variant(vllm_profile, options={"unload_timeout_s": 0.3}))
    with pytest.raises(CortexError) as caught:
        await harness.unload("tiny-vllm")
    assert caught.value.code == "memory_not_released"
    assert "GPU 0: 2048 MiB" in caught.value.message
    with pytest.raises(NotFound):
        harness.describe("tiny-vllm")  # gone from the harness all the same


async def test_unloading_an_asleep_model_expects_only_what_it_still_held(
    harness: Any, scripted: Any, vllm_profile: ModelProfile
) -> None:
    await harness.load(vllm_profile)
    await harness.sleep("tiny-vllm")
    await harness.unload("tiny-vllm")
    assert scripted.probe.used[0] == GIB


async def test_engines_sharing_a_gpu_start_one_at_a_time(
    harness: Any, scripted: Any, vllm_profile: ModelProfile
) -> None:
    scripted.script.start_s = 0.3
    first = variant(vllm_profile, id="a", devices=[0])
    second = variant(vllm_profile, id="b", devices=[0])
    await asyncio.gather(harness.load(first), harness.load(second))
    (_, _, a_ended), (_, b_began, _) = sorted(scripted.starts, key=lambda s: s[1])
    assert b_began >= a_ended


async def test_engines_on_different_gpus_start_together(
    harness: Any, scripted: Any, vllm_profile: ModelProfile
) -> None:
    scripted.script.start_s = 0.3
    first = variant(vllm_profile, id="a", devices=[0])
    second = variant(vllm_profile, id="b", devices=[1])
    await asyncio.gather(harness.load(first), harness.load(second))
    (_, _, a_ended), (_, b_began, _) = sorted(scripted.starts, key=lambda s: s[1])
    assert b_began < a_ended
    assert [engine.args.device_ids for engine in scripted.engines] in (
        [["GPU-fake-0"], ["GPU-fake-1"]],
        [["GPU-fake-1"], ["GPU-fake-0"]],
    )


async def test_a_cancelled_load_shuts_down_the_engine_it_was_starting(
    harness: Any, scripted: Any, vllm_profile: ModelProfile
) -> None:
    scripted.script.start_s = 0.3
    task = asyncio.create_task(harness.load(vllm_profile))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [engine.calls for engine in scripted.engines] == [["shutdown"]]
    assert scripted.probe.used[0] == GIB
    with pytest.raises(NotFound):
        harness.describe("tiny-vllm")


async def test_an_engine_that_fails_to_start_is_a_load_error(
    harness: Any, scripted: Any, vllm_profile: ModelProfile
) -> None:
    scripted.script.start_error = RuntimeError("Engine core initialization failed")
    with pytest.raises(CortexError) as caught:
        await harness.load(vllm_profile)
    assert caught.value.code == "load_failed"
    assert "Engine core initialization failed" in caught.value.message


async def test_bad_options_fail_the_load_before_any_engine_starts(
    harness: Any, scripted: Any, vllm_profile: ModelProfile
) -> None:
    with pytest.raises(BadRequest) as caught:
        await harness.load(variant(vllm_profile, options={"engine_args": {"no_such_arg": 1}}))
    assert "'no_such_arg'" in caught.value.message
    with pytest.raises(BadRequest) as caught:
        await harness.load(variant(vllm_profile, options={"tool_parser": "nope"}))
    assert "nope" in caught.value.message
    assert [engine.calls for engine in scripted.engines] == [["shutdown"]]  # the second one started


async def test_an_embedding_profile_is_refused(harness: Any, vllm_profile: ModelProfile) -> None:
    with pytest.raises(BadRequest) as caught:
        await harness.load(variant(vllm_profile, task="embedding"))
    assert caught.value.code == "unsupported_task"


def stop_at_start(scripted: Any) -> list[Any]:
    """Make the scripted factory record the engine arguments and fail before building anything."""
    seen: list[Any] = []

    def stop(args: Any) -> None:
        seen.append(args)
        raise CortexError("stop here", code="test_stop")

    scripted.on_start = stop
    return seen


async def test_offline_a_hub_model_is_found_in_the_harness_cache(
    harness: Any,
    scripted: Any,
    vllm_profile: ModelProfile,
    vllm_context: HarnessContext,
    harness_hub_snapshot: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    seen = stop_at_start(scripted)

    with pytest.raises(CortexError, match="stop here"):
        await harness.load(variant(vllm_profile, source=HUB_ID))

    # vLLM gets the snapshot itself: given the id, offline it looks in the default hub cache only.
    assert seen[0].model == str(harness_hub_snapshot)
    assert seen[0].download_dir == str(vllm_context.cache_dir / "hub")


async def test_offline_the_hub_option_names_the_cache_looked_in(
    harness: Any,
    scripted: Any,
    vllm_profile: ModelProfile,
    tmp_path: Path,
    tiny_chat_model: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = cached_repo(tmp_path / "elsewhere", HUB_ID, tiny_chat_model)
    seen = stop_at_start(scripted)
    profile = variant(vllm_profile, source=HUB_ID, options={"hub_cache_dir": str(tmp_path / "elsewhere")})

    with pytest.raises(CortexError, match="stop here"):
        await harness.load(profile)

    assert seen[0].model == str(snapshot)


async def test_offline_a_hub_model_never_downloaded_is_not_found(
    harness: Any, scripted: Any, vllm_profile: ModelProfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    seen = stop_at_start(scripted)

    with pytest.raises(NotFound) as caught:
        await harness.load(variant(vllm_profile, source="some-org/never-downloaded"))

    assert caught.value.code == "model_not_found"
    assert seen == []


async def test_the_engine_args_revision_picks_the_snapshot_and_a_path_shaped_one_is_refused(
    harness: Any,
    scripted: Any,
    vllm_profile: ModelProfile,
    harness_hub_snapshot: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    seen = stop_at_start(scripted)
    pinned = {**vllm_profile.options, "engine_args": {"revision": FAKE_COMMIT}}
    with pytest.raises(CortexError, match="stop here"):
        await harness.load(variant(vllm_profile, source=HUB_ID, options=pinned))
    assert seen[0].model == str(harness_hub_snapshot)

    for revision in ("../../../../etc", "/etc"):
        options = {**vllm_profile.options, "engine_args": {"revision": revision}}
        with pytest.raises(Forbidden) as caught:
            await harness.load(variant(vllm_profile, source=HUB_ID, options=options))
        assert (caught.value.status, caught.value.code) == (403, "source_not_allowed")
    assert len(seen) == 1


async def test_offline_vllm_builds_its_config_from_the_snapshot_the_harness_found(
    harness: Any,
    scripted: Any,
    vllm_profile: ModelProfile,
    harness_hub_snapshot: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import huggingface_hub.constants

    # vLLM reads huggingface_hub's offline flag, which is fixed when huggingface_hub is imported.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    seen = stop_at_start(scripted)
    # Sleep mode needs a CUDA platform, which building the model config does not.
    options = {**vllm_profile.options, "sleep_mode": False, "dtype": "float32"}
    with pytest.raises(CortexError, match="stop here"):
        await harness.load(variant(vllm_profile, source=HUB_ID, options=options))

    model_config = seen[0].create_model_config()

    assert model_config.model == str(harness_hub_snapshot)
    assert model_config.served_model_name == "tiny-vllm"


async def test_engine_stats_come_from_the_engines_scheduler(
    harness: Any, scripted: Any, vllm_profile: ModelProfile
) -> None:
    scripted.script.step_s = 0.01
    await harness.load(vllm_profile)
    assert harness.engine_stats("tiny-vllm")["requests_running"] == 0.0
    stream = harness.chat("tiny-vllm", chat(max_tokens=400))
    await stream.__anext__()
    await stream.__anext__()
    busy = harness.engine_stats("tiny-vllm")
    assert busy["requests_running"] == 1.0
    assert busy["kv_cache_usage_ratio"] == 0.25
    assert busy["prefix_cache_hits_total"] > 0
    assert busy["sleeping"] == 0.0
    await stream.aclose()
    assert harness.engine_stats("tiny-vllm")["requests_running"] == 0.0
    with pytest.raises(NotFound):
        harness.engine_stats("other")


async def test_an_engine_error_ends_the_stream_with_a_server_error(
    harness: Any, scripted: Any, vllm_profile: ModelProfile
) -> None:
    scripted.script.finish_reason = "error"
    await harness.load(vllm_profile)
    with pytest.raises(CortexError) as caught:
        await collect(harness.chat("tiny-vllm", chat(max_tokens=4)))
    assert caught.value.status == 500


async def test_a_completion_can_echo_its_prompt(
    harness: Any, scripted: Any, vllm_profile: ModelProfile
) -> None:
    scripted.script.reply = " and more"
    await harness.load(vllm_profile)
    request = CompletionRequest(model="tiny-vllm", prompt="Once upon a time", max_tokens=8, echo=True)
    deltas = await collect(harness.complete("tiny-vllm", request))
    assert "".join(d.text for d in deltas) == "Once upon a time and more"
    assert deltas[-1].finish_reason == "stop"


async def test_a_chat_model_cannot_embed(harness: Any, vllm_profile: ModelProfile) -> None:
    await harness.load(vllm_profile)
    with pytest.raises(BadRequest) as caught:
        await harness.embed("tiny-vllm", ["x"], normalize=True)
    assert caught.value.code == "model_not_embedding"


async def test_nothing_initialises_cuda_in_the_neuron_process(
    harness: Any, vllm_profile: ModelProfile
) -> None:
    await harness.load(vllm_profile)
    await collect(harness.chat("tiny-vllm", chat(max_tokens=4)))
    await harness.unload("tiny-vllm")
    assert not cuda_initialized_here()
