"""Generation through the transformers harness: limits, stops, seeds, usage and cancellation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.errors import BadRequest, Conflict, NotFound
from cortex_kernel.harness import ContextLengthExceeded, Delta
from cortex_kernel.openai_wire import ChatRequest, CompletionRequest
from cortex_transformers import harness as harness_module
from cortex_transformers.generation import Channel, Finished, GenerationJob
from tests.deltas import collect, text_of, usage_of

if TYPE_CHECKING:
    from cortex_transformers.harness import TransformersHarness

pytestmark = pytest.mark.slow

MODEL = "tiny-chat"


def chat_request(content: str = "Tell me a story.", **fields: Any) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=[{"role": "user", "content": content}], **fields)


@contextlib.contextmanager
def count_forwards(harness: TransformersHarness, model_id: str = MODEL) -> Iterator[list[int]]:
    """Count the model's forward passes: one per generated token, except the last token."""
    calls: list[int] = []
    hook = harness.handles(model_id).model.register_forward_hook(lambda *_: calls.append(1))
    try:
        yield calls
    finally:
        hook.remove()


async def test_usage_is_exact(loaded: TransformersHarness) -> None:
    request = chat_request(max_tokens=9, temperature=0)
    with count_forwards(loaded) as forwards:
        deltas = await collect(loaded.chat(MODEL, request))
    usage = usage_of(deltas)
    assert usage.prompt_tokens == await loaded.count_tokens(MODEL, request)
    assert usage.completion_tokens == len(forwards) == 9
    assert deltas[-1].finish_reason == "length"


async def test_default_output_limit_comes_from_options_then_checkpoint(
    harness: TransformersHarness, tiny_chat_model: Path
) -> None:
    request = ChatRequest(model="a", messages=[{"role": "user", "content": "Hi"}], temperature=0)
    await harness.load(
        ModelProfile(id="a", harness="transformers", source=str(tiny_chat_model), min_devices=0)
    )
    deltas = await collect(harness.chat("a", request))
    assert usage_of(deltas).completion_tokens <= 512  # the synthetic checkpoint's max_new_tokens
    profile = ModelProfile(
        id="b",
        harness="transformers",
        source=str(tiny_chat_model),
        min_devices=0,
        options={"default_max_tokens": 5},
    )
    await harness.load(profile)
    deltas = await collect(harness.chat("b", request))
    assert usage_of(deltas).completion_tokens <= 5


async def test_max_completion_tokens_wins_over_max_tokens(loaded: TransformersHarness) -> None:
    deltas = await collect(
        loaded.chat(MODEL, chat_request(max_tokens=20, max_completion_tokens=3, temperature=0))
    )
    assert usage_of(deltas).completion_tokens == 3


async def test_greedy_is_deterministic(loaded: TransformersHarness) -> None:
    first = await collect(loaded.chat(MODEL, chat_request(max_tokens=16, temperature=0)))
    second = await collect(loaded.chat(MODEL, chat_request(max_tokens=16, temperature=0)))
    # The second run starts from the prefix cache; only the usage may tell them apart.
    assert first[:-1] == second[:-1]
    assert usage_of(first).cached_tokens == 0
    assert usage_of(second).cached_tokens == usage_of(second).prompt_tokens - 1
    usage_of(second).cached_tokens = 0
    assert first[-1] == second[-1]


async def test_seed_reproduces_sampling(loaded: TransformersHarness) -> None:
    def sampled(seed: int) -> Coroutine[Any, Any, list[Delta]]:
        return collect(
            loaded.chat(MODEL, chat_request(max_tokens=24, temperature=1.0, top_p=0.95, seed=seed))
        )

    first, again, other = await sampled(1234), await sampled(1234), await sampled(4321)
    assert text_of(first) == text_of(again)
    assert text_of(first) != text_of(other)


async def test_seeded_requests_are_reproducible_while_running_concurrently(
    loaded: TransformersHarness,
) -> None:
    request = chat_request(max_tokens=24, temperature=1.0, seed=99)
    alone = text_of(await collect(loaded.chat(MODEL, request)))
    together = await asyncio.gather(*(collect(loaded.chat(MODEL, request)) for _ in range(3)))
    assert [text_of(d) for d in together] == [alone] * 3


async def test_sampling_knobs_are_accepted(loaded: TransformersHarness) -> None:
    request = chat_request(
        max_tokens=6,
        temperature=0.7,
        top_k=20,
        top_p=0.9,
        min_p=0.01,
        repetition_penalty=1.1,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        seed=3,
    )
    deltas = await collect(loaded.chat(MODEL, request))
    assert usage_of(deltas).completion_tokens == 6


async def test_stop_sequence_truncates_completion(loaded: TransformersHarness) -> None:
    base = CompletionRequest(model=MODEL, prompt="Once upon a time", max_tokens=40, temperature=0)
    full = "".join(d.text for d in await collect(loaded.complete(MODEL, base)))
    # Pick a stop string from the middle of what greedy decoding produces.
    start = next(i for i in range(4, len(full) - 3) if full[i : i + 3].strip() == full[i : i + 3])
    stop = full[start : start + 3]
    expected = full[: full.index(stop)]
    deltas = await collect(
        loaded.complete(MODEL, CompletionRequest(**{**_fields(base), "stop": [stop, "\x00"]}))
    )
    assert "".join(d.text for d in deltas) == expected
    assert deltas[-1].finish_reason == "stop"
    assert usage_of(deltas).completion_tokens < 40


async def test_stop_sequence_in_chat(loaded: TransformersHarness) -> None:
    def request(**fields: Any) -> ChatRequest:
        return chat_request(max_tokens=40, temperature=1.0, seed=5, **fields)

    full = text_of(await collect(loaded.chat(MODEL, request())))
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    deltas = await collect(loaded.chat(MODEL, request(stop=stop)))
    assert text_of(deltas) == full[: full.index(stop)]
    assert deltas[-1].finish_reason == "stop"


def _fields(request: CompletionRequest) -> dict[str, Any]:
    return {name: getattr(request, name) for name in request.__struct_fields__}


async def test_completion_echo_and_prompt_list(loaded: TransformersHarness) -> None:
    deltas = await collect(
        loaded.complete(MODEL, CompletionRequest(model=MODEL, prompt=["Hello"], max_tokens=2, echo=True))
    )
    assert deltas[0].text == "Hello"
    with pytest.raises(BadRequest):
        await collect(loaded.complete(MODEL, CompletionRequest(model=MODEL, prompt=["a", "b"], max_tokens=2)))


async def test_prompt_longer_than_context_is_rejected(
    harness: TransformersHarness, tiny_chat_model: Path
) -> None:
    profile = ModelProfile(
        id="short", harness="transformers", source=str(tiny_chat_model), min_devices=0, context_length=64
    )
    description = await harness.load(profile)
    assert description.context_length == 64
    request = ChatRequest(model="short", messages=[{"role": "user", "content": "word " * 100}], max_tokens=4)
    counted = await harness.count_tokens("short", request)
    with pytest.raises(ContextLengthExceeded) as caught:
        await collect(harness.chat("short", request))
    assert (caught.value.prompt_tokens, caught.value.limit) == (counted, 64)
    assert caught.value.status == 400 and caught.value.code == "context_length_exceeded"


async def test_output_is_clamped_to_the_room_left(
    harness: TransformersHarness, tiny_chat_model: Path
) -> None:
    profile = ModelProfile(
        id="short", harness="transformers", source=str(tiny_chat_model), min_devices=0, context_length=48
    )
    await harness.load(profile)
    request = ChatRequest(
        model="short", messages=[{"role": "user", "content": "Hi"}], max_tokens=1000, temperature=0
    )
    prompt_tokens = await harness.count_tokens("short", request)
    deltas = await collect(harness.chat("short", request))
    usage = usage_of(deltas)
    assert usage.prompt_tokens + usage.completion_tokens <= 48
    if deltas[-1].finish_reason == "length":
        assert usage.completion_tokens == 48 - prompt_tokens


async def test_a_33k_token_prompt_fits_the_tiny_context(loaded: TransformersHarness) -> None:
    unit = "The weather in Paris is sunny, said the model. "
    per_unit = len(loaded.handles(MODEL).tokenizer.encode(unit, add_special_tokens=False))
    request = chat_request(content=unit * (33_000 // per_unit))
    counted = await loaded.count_tokens(MODEL, request)
    context_length = loaded.describe(MODEL).context_length
    assert context_length is not None
    assert 32_000 < counted < context_length


async def test_closing_the_stream_stops_generation(loaded: TransformersHarness) -> None:
    stream = loaded.chat(MODEL, chat_request(max_tokens=5000, temperature=0))
    assert isinstance(stream, AsyncGenerator)
    with count_forwards(loaded) as forwards:
        for _ in range(3):
            await stream.__anext__()
        await stream.aclose()
        at_close = len(forwards)
        assert loaded.in_flight(MODEL) == 0  # aclose returned after the worker let go
        await asyncio.sleep(0.2)
        assert len(forwards) == at_close, "the model kept decoding after the stream was closed"
    assert at_close < 5000


async def test_cancelling_the_consumer_stops_generation(loaded: TransformersHarness) -> None:
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in loaded.chat(MODEL, chat_request(max_tokens=5000, temperature=0)):
            started.set()

    with count_forwards(loaded) as forwards:
        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        at_cancel = len(forwards)
        assert loaded.in_flight(MODEL) == 0
        await asyncio.sleep(0.2)
        assert len(forwards) == at_cancel
    assert at_cancel < 5000


async def test_a_consumer_cancelled_again_while_it_stops_leaves_no_job_behind(
    loaded: TransformersHarness,
) -> None:
    # What the neuron does when a streaming client leaves: it cancels the task that drains the
    # stream, and the cancellation can land again while the stream waits for its worker to let
    # go. Each leak kept a job (with its prompt and channel) forever: about 8 KB per disconnect.
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in loaded.chat(MODEL, chat_request(max_tokens=5000, temperature=0)):
            started.set()

    for _ in range(5):
        started.clear()
        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        await asyncio.sleep(0)  # the stream is now in its cleanup, waiting for the worker
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    for _ in range(200):  # the workers finish their decode step and let go
        if loaded.in_flight(MODEL) == 0:
            break
        await asyncio.sleep(0.05)
    assert loaded.in_flight(MODEL) == 0


async def test_unloading_mid_stream_ends_the_stream_with_not_found(loaded: TransformersHarness) -> None:
    stream = loaded.chat(MODEL, chat_request(max_tokens=5000, temperature=0))
    await stream.__anext__()
    await loaded.unload(MODEL)
    with pytest.raises(NotFound):
        await collect(stream)


async def test_sleep_refuses_requests_until_wake(loaded: TransformersHarness) -> None:
    assert loaded.supports_sleep
    await loaded.sleep(MODEL)
    assert loaded.describe(MODEL).devices == []
    with pytest.raises(Conflict):
        await collect(loaded.chat(MODEL, chat_request(max_tokens=2)))
    assert await loaded.count_tokens(MODEL, chat_request()) > 0  # the tokenizer still works
    await loaded.wake(MODEL)
    deltas = await collect(loaded.chat(MODEL, chat_request(max_tokens=2)))
    assert usage_of(deltas).completion_tokens == 2


async def test_sleep_moves_the_weights_out_of_the_model_and_wake_restores_them(
    loaded: TransformersHarness,
) -> None:
    before = await collect(loaded.chat(MODEL, chat_request(max_tokens=6, temperature=0)))
    live, kept = loaded.resident_bytes(MODEL)
    assert live > 0 and kept == 0
    await loaded.sleep(MODEL)
    asleep_live, asleep_kept = loaded.resident_bytes(MODEL)
    assert asleep_live == 0 and asleep_kept == live  # every byte left the model for the host copy
    assert all(p.device.type == "meta" for p in loaded.handles(MODEL).model.parameters())
    await loaded.wake(MODEL)
    assert loaded.resident_bytes(MODEL) == (live, 0)
    after = await collect(loaded.chat(MODEL, chat_request(max_tokens=6, temperature=0)))
    assert "".join(d.text for d in after) == "".join(d.text for d in before)  # the same weights came back


async def test_chat_template_kwargs_reach_the_template(loaded: TransformersHarness) -> None:
    plain = await loaded.count_tokens(MODEL, chat_request())
    thinking = await loaded.count_tokens(MODEL, chat_request(chat_template_kwargs={"enable_thinking": True}))
    assert thinking == plain + 2  # "<think>" and "\n"
    with pytest.raises(BadRequest):
        await loaded.count_tokens(MODEL, chat_request(chat_template_kwargs={"chat_template": "{{ 1 }}"}))


async def test_tools_change_the_prompt_unless_tool_choice_is_none(loaded: TransformersHarness) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    plain = await loaded.count_tokens(MODEL, chat_request())
    with_tools = await loaded.count_tokens(MODEL, chat_request(tools=tools))
    none = await loaded.count_tokens(MODEL, chat_request(tools=tools, tool_choice="none"))
    assert with_tools > plain == none


async def test_image_content_is_refused(loaded: TransformersHarness) -> None:
    request = ChatRequest(
        model=MODEL,
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}],
    )
    with pytest.raises(BadRequest) as caught:
        await loaded.count_tokens(MODEL, request)
    assert caught.value.param == "messages[0].content"


async def test_history_with_openai_tool_calls_renders(loaded: TransformersHarness) -> None:
    request = ChatRequest(
        model=MODEL,
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "w", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        max_tokens=2,
    )
    deltas = await collect(loaded.chat(MODEL, request))
    assert usage_of(deltas).prompt_tokens == await loaded.count_tokens(MODEL, request)


# -- the parser inside the harness, with scripted model output ----------------------------------


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the model's output with a script, to test what the harness makes of it."""
    script: list[str] = []

    async def fake_stream(
        job_factory: Callable[[Channel], GenerationJob], executor: Executor, registry: set[GenerationJob]
    ) -> AsyncGenerator[str | Finished]:
        for piece in script:
            yield piece
        yield Finished("stop", len(script))

    monkeypatch.setattr(harness_module, "stream_generation", fake_stream)
    return script


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


async def test_tool_calls_finish_with_tool_calls(loaded: TransformersHarness, scripted: list[str]) -> None:
    scripted += [
        "Checking.<tool",
        '_call>{"name": "get_weather", "arguments": {"city": "Par',
        'is"}}</tool_call>',
    ]
    deltas = await collect(loaded.chat(MODEL, chat_request(tools=TOOLS)))
    calls = [call for d in deltas for call in d.tool_calls]
    assert [(c.index, c.name, c.arguments) for c in calls] == [(0, "get_weather", '{"city": "Paris"}')]
    assert calls[0].id is not None
    assert calls[0].id.startswith("call_")
    assert "".join(d.text for d in deltas) == "Checking."
    assert deltas[-1].finish_reason == "tool_calls"


async def test_tool_markup_is_text_when_tool_choice_is_none(
    loaded: TransformersHarness, scripted: list[str]
) -> None:
    scripted += ['<tool_call>{"name": "get_weather"}</tool_call>']
    deltas = await collect(loaded.chat(MODEL, chat_request(tools=TOOLS, tool_choice="none")))
    assert "".join(d.text for d in deltas) == scripted[0]
    assert deltas[-1].finish_reason == "stop"


async def test_reasoning_opened_by_the_template(loaded: TransformersHarness, scripted: list[str]) -> None:
    scripted += ["weighing options", "</th", "ink>\n\nAnswer."]
    request = chat_request(chat_template_kwargs={"enable_thinking": True})
    deltas = await collect(loaded.chat(MODEL, request))
    assert "".join(d.reasoning for d in deltas) == "weighing options"
    assert "".join(d.text for d in deltas) == "Answer."
