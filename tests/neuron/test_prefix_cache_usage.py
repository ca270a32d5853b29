"""The prefix cache seen by clients through real processes: a second turn that resends the history
is reported cached by the openai SDK (``prompt_tokens_details``, streamed and not) and by the
anthropic SDK (``cache_read_input_tokens``), and the neuron counts the cached tokens."""

from __future__ import annotations

from collections.abc import Callable

import anthropic
import openai
import pytest
from anthropic.types import MessageParam, TextBlock
from openai.types.chat import ChatCompletionMessageParam

from tests.daemons import Daemon, http_json

pytestmark = pytest.mark.slow

SYSTEM = "You are a coding agent. " + " ".join(f"Rule {i}: be brief." for i in range(40))


def cached_tokens_counter(neuron: Daemon) -> float:
    import urllib.request

    with urllib.request.urlopen(f"{neuron.url}/metrics", timeout=30) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith('cortex_neuron_tokens_total{kind="cached",model="tiny-chat"}'):
            return float(line.split()[-1])
    return 0.0


def test_a_resent_history_is_reported_cached_through_the_gateway(
    start_neuron: Callable[..., Daemon],
    start_gateway: Callable[..., Daemon],
    openai_client: Callable[..., openai.OpenAI],
) -> None:
    neuron = start_neuron()
    gateway = start_gateway({"n1": neuron})
    client = openai_client(f"{gateway.url}/v1")
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "List the files."},
    ]
    first = client.chat.completions.create(model="tiny-chat", messages=messages, max_tokens=8, temperature=0)
    assert first.usage is not None
    assert not (first.usage.prompt_tokens_details and first.usage.prompt_tokens_details.cached_tokens)
    messages += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "Now the tests."},
    ]
    second = client.chat.completions.create(model="tiny-chat", messages=messages, max_tokens=8, temperature=0)
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached is not None
    assert first.usage.prompt_tokens <= cached < second.usage.prompt_tokens
    # Streamed: the final usage chunk carries it too.
    messages += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "And the docs."}]
    chunks = list(
        client.chat.completions.create(
            model="tiny-chat",
            messages=messages,
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens is not None
    assert usage.prompt_tokens_details.cached_tokens >= second.usage.prompt_tokens
    with anthropic.Anthropic(base_url=gateway.url, api_key="k", max_retries=0, timeout=120) as sdk:
        turns: list[MessageParam] = [{"role": "user", "content": "Explain the module."}]
        reply = sdk.messages.create(model="tiny-chat", system=SYSTEM, messages=turns, max_tokens=8)
        block = reply.content[0]
        assert isinstance(block, TextBlock)
        turns += [{"role": "assistant", "content": block.text or "ok"}]
        turns += [{"role": "user", "content": "Go on."}]
        again = sdk.messages.create(model="tiny-chat", system=SYSTEM, messages=turns, max_tokens=8)
    assert again.usage.cache_read_input_tokens is not None
    assert again.usage.cache_read_input_tokens > 100
    assert again.usage.input_tokens >= 1
    assert cached_tokens_counter(neuron) >= cached + again.usage.cache_read_input_tokens
    assert http_json("GET", f"{neuron.url}/health")[0] == 200
