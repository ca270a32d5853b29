"""OpenAI requests to vLLM's real ``SamplingParams``, through vLLM's own request objects."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("vllm", reason="vllm is not installed")

from vllm.sampling_params import RequestOutputKind, SamplingParams

from cortex_kernel.errors import BadRequest
from cortex_kernel.openai_wire import ChatRequest, CompletionRequest
from cortex_vllm.translate import sampling_params, vllm_chat_request, vllm_completion_request

MESSAGES = [{"role": "user", "content": "hi"}]


def chat_params(
    max_tokens: int = 16, defaults: dict[str, Any] | None = None, **fields: Any
) -> SamplingParams:
    request = vllm_chat_request(ChatRequest(model="m", messages=MESSAGES, **fields))
    return sampling_params(request, max_tokens, defaults or {})


def test_every_openai_sampling_field_reaches_sampling_params() -> None:
    params = chat_params(
        max_tokens=17,
        temperature=0.3,
        top_p=0.9,
        top_k=5,
        min_p=0.1,
        seed=7,
        stop=["END", "STOP"],
        presence_penalty=0.5,
        frequency_penalty=0.25,
        repetition_penalty=1.1,
        logprobs=True,
        top_logprobs=3,
        n=1,
        ignore_eos=True,
    )
    assert isinstance(params, SamplingParams)
    assert params.max_tokens == 17
    assert params.temperature == 0.3
    assert params.top_p == 0.9
    assert params.top_k == 5
    assert params.min_p == 0.1
    assert params.seed == 7
    assert params.stop == ["END", "STOP"]
    assert params.presence_penalty == 0.5
    assert params.frequency_penalty == 0.25
    assert params.repetition_penalty == 1.1
    assert params.logprobs == 3
    assert params.n == 1
    assert params.ignore_eos is True


def test_output_always_comes_as_deltas() -> None:
    assert chat_params().output_kind == RequestOutputKind.DELTA


def test_a_single_stop_string_is_a_list() -> None:
    assert chat_params(stop="END").stop == ["END"]


def test_the_checkpoint_defaults_fill_what_the_request_leaves_out() -> None:
    params = chat_params(defaults={"temperature": 0.6, "top_p": 0.95, "top_k": 20}, temperature=0.1)
    assert params.temperature == 0.1  # the request wins
    assert params.top_p == 0.95
    assert params.top_k == 20


def test_without_defaults_openai_defaults_apply() -> None:
    params = chat_params()
    assert (params.temperature, params.top_p, params.logprobs, params.ignore_eos) == (1.0, 1.0, None, False)


def test_a_json_schema_response_format_becomes_structured_output() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    params = chat_params(
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    )
    assert params.structured_outputs is not None
    assert params.structured_outputs.json == schema


def test_a_json_object_response_format_becomes_structured_output() -> None:
    params = chat_params(response_format={"type": "json_object"})
    assert params.structured_outputs is not None
    assert params.structured_outputs.json_object is True


def test_no_response_format_means_no_structured_output() -> None:
    assert chat_params().structured_outputs is None


def test_completion_fields_reach_sampling_params() -> None:
    request = CompletionRequest(
        model="m", prompt="once", max_tokens=5, temperature=0.0, seed=3, stop="\n", ignore_eos=True
    )
    params = sampling_params(vllm_completion_request(request), 5, {})
    assert (params.max_tokens, params.temperature, params.seed, params.stop) == (5, 0.0, 3, ["\n"])
    assert params.ignore_eos is True
    assert params.output_kind == RequestOutputKind.DELTA


def test_echo_is_left_to_the_harness() -> None:
    request = vllm_completion_request(CompletionRequest(model="m", prompt="once", echo=True))
    assert not request.echo


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
    ],
)
def test_vllm_validation_errors_are_400s_naming_the_parameter(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as caught:
        vllm_chat_request(ChatRequest(model="m", messages=MESSAGES, **fields))
    assert caught.value.param == param


def test_a_malformed_message_is_a_400() -> None:
    with pytest.raises(BadRequest) as caught:
        vllm_chat_request(ChatRequest(model="m", messages=[{"role": "user", "content": 42}]))
    assert caught.value.status == 400
