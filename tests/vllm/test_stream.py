"""The stream adapter fed with real ``RequestOutput`` objects: text, finish reasons, usage."""

from __future__ import annotations

import pytest

pytest.importorskip("vllm", reason="vllm is not installed")

from vllm.outputs import CompletionOutput, RequestOutput

from cortex_kernel.errors import CortexError
from cortex_kernel.harness import Delta, Usage
from cortex_vllm.stream import DeltaAdapter, EngineAborted

PROMPT = [1, 2, 3, 4, 5]


def output(
    text: str, token_ids: list[int], reason: str | None = None, cached: int | None = None
) -> RequestOutput:
    completion = CompletionOutput(
        index=0, text=text, token_ids=token_ids, cumulative_logprob=None, logprobs=None, finish_reason=reason
    )
    return RequestOutput(
        request_id="r",
        prompt=None,
        prompt_token_ids=PROMPT,
        prompt_logprobs=None,
        outputs=[completion],
        finished=reason is not None,
        num_cached_tokens=cached,
    )


def run(outputs: list[RequestOutput]) -> list[Delta]:
    adapter = DeltaAdapter(PROMPT)
    return [delta for item in outputs for delta in adapter.feed(item)]


def test_text_streams_and_the_last_delta_carries_finish_and_usage() -> None:
    deltas = run([output("Hel", [10]), output("lo", [11]), output(" world", [12, 13], "stop", cached=3)])
    assert [d.text for d in deltas] == ["Hel", "lo", " world", ""]
    assert deltas[-1] == Delta(
        finish_reason="stop", usage=Usage(prompt_tokens=5, completion_tokens=4, cached_tokens=3)
    )
    assert [d.finish_reason for d in deltas[:-1]] == [None, None, None]
    assert all(d.usage is None for d in deltas[:-1])


def test_outputs_without_new_text_yield_no_empty_deltas() -> None:
    deltas = run([output("", []), output("a", [7]), output("", [], "length")])
    assert deltas == [
        Delta(text="a"),
        Delta(finish_reason="length", usage=Usage(prompt_tokens=5, completion_tokens=1)),
    ]


@pytest.mark.parametrize(
    ("vllm_reason", "openai_reason"), [("stop", "stop"), ("length", "length"), ("repetition", "stop")]
)
def test_finish_reasons_map_to_openai(vllm_reason: str, openai_reason: str) -> None:
    assert run([output("x", [1], vllm_reason)])[-1].finish_reason == openai_reason


def test_an_abort_the_consumer_did_not_ask_for_is_raised() -> None:
    adapter = DeltaAdapter(PROMPT)
    adapter.feed(output("x", [1]))
    with pytest.raises(EngineAborted):
        adapter.feed(output("", [], "abort"))


def test_an_engine_error_is_a_server_error() -> None:
    with pytest.raises(CortexError) as caught:
        run([output("x", [1], "error")])
    assert caught.value.status == 500
    assert caught.value.code == "engine_error"


def test_cached_tokens_keep_the_last_figure_the_engine_sent() -> None:
    deltas = run([output("a", [1], cached=8), output("b", [2]), output("", [], "stop")])
    assert deltas[-1].usage == Usage(prompt_tokens=5, completion_tokens=2, cached_tokens=8)


def test_a_parser_needs_its_request() -> None:
    with pytest.raises(ValueError, match="request"):
        # arg-type where vllm is installed; unused where mypy sees vllm as Any
        DeltaAdapter(PROMPT, parser=object(), request=None)  # type: ignore[arg-type, unused-ignore]
