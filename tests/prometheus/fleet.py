"""A neuron and a gateway with room for two of three same-sized models, and traffic for them.

The neuron's ``memory_budget_mb`` and the models' ``vram_mb`` make placement deterministic: ``a``
and ``b`` fit together, so asking for ``c`` evicts whichever is least recently used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anthropic
import openai
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionMessageParam

from tests.daemons import Daemon, free_port, http_json, toml_str
from tests.prometheus.exposition import Series, fetch, parse, value

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
HI_ANTHROPIC: list[MessageParam] = [{"role": "user", "content": "hi"}]


def catalogue(chat: Path) -> str:
    return "".join(
        f'\n[[models]]\nid = "{name}"\nharness = "transformers"\nsource = {toml_str(chat)}\n'
        "min_devices = 0\nvram_mb = 60\n"
        for name in ("a", "b", "c")
    )


@dataclass
class Fleet:
    neuron: Daemon
    gateway: Daemon
    metrics_port: int

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def gateway_metrics(self) -> str:
        return fetch(self.metrics_url)

    def neuron_metrics(self) -> str:
        return fetch(f"{self.neuron.url}/metrics")

    def wait_for_poll(self, check: Callable[[Series], bool], timeout: float = 15.0) -> Series:
        """Scrape the gateway until ``check(series)`` holds (the fleet gauges follow each poll)."""
        deadline = time.monotonic() + timeout
        while True:
            series = parse(self.gateway_metrics())
            if check(series):
                return series
            assert time.monotonic() < deadline, "the gateway's fleet gauges never showed the expected state"
            time.sleep(0.2)

    def settle(self) -> None:
        """Wait for a poll that began after now: placement (and eviction's idea of which models
        are idle) works from the last poll, so a request that just ended may still look busy.
        A poll takes milliseconds on loopback; one stamped half a second from now began after it."""
        after = time.time() + 0.5
        stamp = "cortex_fleet_last_poll_timestamp_seconds"
        self.wait_for_poll(lambda s: value(s, stamp) > after)


def start_fleet(
    start_neuron: Callable[..., Daemon],
    start_gateway: Callable[..., Daemon],
    chat: Path,
    extra: str = "",
    nodes: str = "",
) -> Fleet:
    """``nodes`` is TOML for more ``[[neurons]]`` entries (e.g. one that is down)."""
    neuron = start_neuron("memory_budget_mb = 130\n")
    metrics_port = free_port()
    gateway = start_gateway(
        {"n1": neuron},
        extra=f'metrics_listen = "127.0.0.1:{metrics_port}"\n{nodes}\n[eviction]\nstrategy = "lru"\n{extra}',
        catalogue_extra=catalogue(chat),
    )
    fleet = Fleet(neuron, gateway, metrics_port)
    fleet.wait_for_poll(lambda s: value(s, "cortex_node_up", node="n1") == 1)
    return fleet


@dataclass
class Usage:
    prompt: int  # every prompt token, cached ones included (what the gateway counts)
    completion: int
    cached: int = 0  # prompt tokens served from the neuron's prefix cache


def openai_chat(client: openai.OpenAI, model: str, *, stream: bool) -> Usage:
    extra: dict[str, bool] = {"ignore_eos": True}
    if not stream:
        reply = client.chat.completions.create(model=model, messages=HI, max_tokens=4, extra_body=extra)
        assert reply.usage is not None
        return Usage(reply.usage.prompt_tokens, reply.usage.completion_tokens, _cached(reply.usage))
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=HI,
            max_tokens=48,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=extra,
        )
    )
    usage = chunks[-1].usage
    assert usage is not None
    return Usage(usage.prompt_tokens, usage.completion_tokens, _cached(usage))


def _cached(usage: openai.types.CompletionUsage) -> int:
    details = usage.prompt_tokens_details
    return (details.cached_tokens or 0) if details is not None else 0


def anthropic_message(client: anthropic.Anthropic, model: str, *, stream: bool) -> Usage:
    if not stream:
        message = client.messages.create(model=model, max_tokens=4, messages=HI_ANTHROPIC)
    else:
        with client.messages.stream(model=model, max_tokens=48, messages=HI_ANTHROPIC) as events:
            message = events.get_final_message()
    cached = message.usage.cache_read_input_tokens or 0  # Anthropic's input_tokens leave these out
    return Usage(message.usage.input_tokens + cached, message.usage.output_tokens, cached)


def sleep_and_wake(neuron: Daemon, model: str) -> None:
    for action, state in (("sleep", "sleeping"), ("wake", "ready")):
        status, body, _ = http_json("POST", f"{neuron.url}/models/{action}", {"model": model})
        assert status == 200 and body["state"] == state, body
