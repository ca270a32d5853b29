"""Coding-agent sessions over two real neurons: each session's turns stay on one neuron.

Eight sessions run concurrently, turn by turn; every turn resends the whole growing history, as
Claude Code and Codex do. Which neuron served which session is read from the neurons' own
``/metrics``, never from the gateway: after each round of eight concurrent turns, the change in
each neuron's request, prompt-token and completion-token counters must be made by exactly one
set of sessions (session ``i`` asks for ``2**i`` completion tokens, so the sets are told apart).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionMessageParam

from tests.daemons import Daemon, http_json
from tests.routing.conftest import neuron_counts, scrape
from tests.routing.raw_headers import http_json_with_headers

pytestmark = pytest.mark.slow

Usage = tuple[int, int, int | None]  # one turn's (prompt tokens, completion tokens, cached tokens)

SESSIONS = 8
ROUNDS = 4
SYSTEM = "You are a coding agent. Read the files, then fix the bug the user reports. " * 8
# The load bound never moves a session between two replicas at eps = 1 (the bound is the total
# load); these tests are about stickiness and failover, tests/routing/test_routers.py about the bound.
AFFINITY = 'strategy = "affinity"\n\n[routing.affinity]\nload_epsilon = 1.0'


def _first_message(i: int) -> str:
    return f"Session {i}: the test in module_{i}.py fails. " + "Here is more context. " * i


def _attribute(
    before: tuple[float, float, float],
    after: tuple[float, float, float],
    usage: Sequence[Usage],
    sessions: Sequence[int],
) -> set[int]:
    """The one set of sessions whose (requests, prompt, completion) sums to the neuron's delta."""
    delta = tuple(a - b for a, b in zip(after, before, strict=True))
    found = [
        set(group)
        for size in range(len(sessions) + 1)
        for group in itertools.combinations(sessions, size)
        if (size, sum(usage[i][0] for i in group), sum(usage[i][1] for i in group)) == delta
    ]
    assert len(found) == 1, f"neuron delta {delta} is not made by exactly one set of sessions: {found}"
    return found[0]


class Fleet:
    """The two neurons' counters, read around each round."""

    def __init__(self, neurons: dict[str, Daemon]) -> None:
        self.neurons = neurons

    def counts(self, alive: set[str] | None = None) -> dict[str, tuple[float, float, float]]:
        return {name: neuron_counts(n) for name, n in self.neurons.items() if alive is None or name in alive}


async def _anthropic_round(
    client: anthropic.AsyncAnthropic, histories: list[list[MessageParam]], turn: int
) -> list[Usage]:
    async def one(i: int) -> Usage:
        reply = await client.messages.create(
            model="tiny-chat",
            system=SYSTEM,
            messages=histories[i],
            max_tokens=2**i,
            extra_headers={"x-claude-code-session-id": f"claude-session-{i}"},
        )
        text = "".join(block.text for block in reply.content if block.type == "text") or "ok"
        histories[i].append({"role": "assistant", "content": text})
        histories[i].append({"role": "user", "content": f"Turn {turn + 1}: now run the tests again."})
        cached = reply.usage.cache_read_input_tokens
        # Anthropic's input_tokens leave out the cache reads; the neuron counts every prompt token.
        return reply.usage.input_tokens + (cached or 0), reply.usage.output_tokens, cached

    return await asyncio.gather(*(one(i) for i in range(SESSIONS)))


async def _openai_round(
    client: openai.AsyncOpenAI, histories: list[list[ChatCompletionMessageParam]], turn: int
) -> list[Usage]:
    async def one(i: int) -> Usage:
        reply = await client.chat.completions.create(
            model="tiny-chat",
            messages=histories[i],
            max_tokens=2**i,
            temperature=0,
            prompt_cache_key=f"codex-session-{i}",
            extra_body={"ignore_eos": True},
        )
        histories[i].append({"role": "assistant", "content": reply.choices[0].message.content or "ok"})
        histories[i].append({"role": "user", "content": f"Turn {turn + 1}: now run the tests again."})
        assert reply.usage is not None
        details = reply.usage.prompt_tokens_details
        cached = details.cached_tokens if details is not None else None
        return reply.usage.prompt_tokens, reply.usage.completion_tokens, cached

    return await asyncio.gather(*(one(i) for i in range(SESSIONS)))


def _run(
    fleet: Fleet, gateway: Daemon, sdk: str, kill_after: int | None = None
) -> tuple[list[dict[str, set[int]]], list[list[Usage]]]:
    """Run the rounds; return, per round, the sessions each neuron served, and the usages."""
    histories: list[list[Any]]  # JSON messages, in the dialect of the SDK in use
    if sdk == "anthropic":
        histories = [[{"role": "user", "content": _first_message(i)}] for i in range(SESSIONS)]
    else:
        histories = [
            [{"role": "system", "content": SYSTEM}, {"role": "user", "content": _first_message(i)}]
            for i in range(SESSIONS)
        ]
    # The round for the SDK in use: it takes that SDK's client and histories.
    play: Callable[..., Awaitable[list[Usage]]] = _anthropic_round if sdk == "anthropic" else _openai_round
    alive = set(fleet.neurons)
    served: list[dict[str, set[int]]] = []
    usages: list[list[Usage]] = []

    async def main() -> None:
        client: anthropic.AsyncAnthropic | openai.AsyncOpenAI
        if sdk == "anthropic":
            client = anthropic.AsyncAnthropic(
                base_url=gateway.url, api_key="unused", max_retries=0, timeout=300
            )
        else:
            client = openai.AsyncOpenAI(
                base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=300
            )
        async with client:
            for turn in range(ROUNDS):
                if kill_after is not None and turn == kill_after:
                    fleet.neurons["n2"].kill()
                    alive.discard("n2")
                before = fleet.counts(alive)
                usage = await play(client, histories, turn)
                after = fleet.counts(alive)
                sessions = set(range(SESSIONS))
                placed: dict[str, set[int]] = {}
                for name in sorted(alive):
                    placed[name] = _attribute(before[name], after[name], usage, sorted(sessions))
                    sessions -= placed[name]
                assert not sessions, f"sessions {sessions} were served by no live neuron"
                served.append(placed)
                usages.append(usage)

    asyncio.run(main())
    return served, usages


def _assert_cached_share(usages: list[list[Usage]]) -> None:
    """From the third turn on, most of each prompt comes from the prefix cache, where the
    harness reports cached tokens at all (``usage.prompt_tokens_details.cached_tokens``)."""
    later = [u for round_ in usages[2:] for u in round_]
    if any(cached is None for _, _, cached in later) or not any(cached for _, _, cached in later):
        return  # the harness reports no cached tokens (the Anthropic dialect then reads 0 throughout)
    share = sum(cached or 0 for _, _, cached in later) / sum(prompt for prompt, _, _ in later)
    assert share >= 0.8, f"cached share from the third turn on: {share:.2f}"


def _decisions(gateway: Daemon) -> dict[str, float]:
    import re

    config = next(gateway.log.parent.glob("cortex.toml")).read_text()
    listen = re.search(r'metrics_listen = "([^"]+)"', config)
    assert listen is not None
    url = "http://" + listen.group(1) + "/metrics"
    return {
        dict(labels)["outcome"]: value
        for (name, labels), value in scrape(url).items()
        if name == "cortex_gateway_routing_decisions_total"
    }


@pytest.mark.parametrize("sdk", ["anthropic", "openai"])
def test_with_affinity_every_turn_of_a_session_lands_on_the_neuron_of_its_first(
    sdk: str, two_neurons: dict[str, Daemon], routed_gateway: Callable[..., Daemon]
) -> None:
    gateway = routed_gateway(two_neurons, AFFINITY)
    served, usages = _run(Fleet(two_neurons), gateway, sdk)
    first = served[0]
    assert all(placed == first for placed in served[1:]), served
    assert first["n1"] and first["n2"], f"all sessions on one neuron: {first}"
    _assert_cached_share(usages)
    decisions = _decisions(gateway)
    assert decisions.get("affinity_hit", 0) >= SESSIONS * (ROUNDS - 1)


def test_a_killed_neurons_sessions_move_to_the_survivor_and_stay(
    two_neurons: dict[str, Daemon], routed_gateway: Callable[..., Daemon]
) -> None:
    gateway = routed_gateway(two_neurons, AFFINITY)
    served, _ = _run(Fleet(two_neurons), gateway, "openai", kill_after=2)
    assert served[0] == served[1] and served[0]["n2"], served
    assert served[2] == served[3] == {"n1": set(range(SESSIONS))}, served


def test_least_loaded_on_the_same_workload_for_comparison(
    two_neurons: dict[str, Daemon], routed_gateway: Callable[..., Daemon], capsys: pytest.CaptureFixture[str]
) -> None:
    """The old policy, measured on the same sessions: how many turns stayed on their neuron.
    Recorded (printed, and in docs/performance.md), not asserted: it depends on timing."""
    gateway = routed_gateway(two_neurons, 'strategy = "least_loaded"')
    served, _ = _run(Fleet(two_neurons), gateway, "openai")
    where = [{i: name for name, group in placed.items() for i in group} for placed in served]
    stayed = sum(where[t][i] == where[t - 1][i] for t in range(1, ROUNDS) for i in range(SESSIONS))
    with capsys.disabled():
        print(f"\nleast_loaded: {stayed}/{SESSIONS * (ROUNDS - 1)} later turns on the previous turn's neuron")
    assert len(served) == ROUNDS


BAD_BODIES: list[tuple[dict[str, str], dict[str, Any]]] = [
    ({"x-claude-code-session-id": "x" * 5000}, {}),
    ({"x-claude-code-session-id": "caf\u00e9"}, {}),
    ({"x-session-id": ""}, {}),
    # Body values the gateway cannot use for routing: the neuron judges the body as usual.
    ({}, {"prompt_cache_key": 12, "user": ["not", "a", "string"]}),
    ({"x-claude-code-request-class": "urgent!"}, {"messages": "not a list"}),
    ({}, {"messages": [1, 2, {"role": None}]}),
]


def test_bad_routing_input_is_ignored_never_a_5xx(
    two_neurons: dict[str, Daemon], routed_gateway: Callable[..., Daemon]
) -> None:
    gateway = routed_gateway(two_neurons, AFFINITY)
    for headers, extra in BAD_BODIES:
        body = {
            "model": "tiny-chat",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2,
            **extra,
        }
        raw_headers = {k: v.encode("utf-8").decode("latin-1") for k, v in headers.items()}
        status, reply, _ = http_json_with_headers(f"{gateway.url}/v1/chat/completions", body, raw_headers)
        assert status < 500, (headers, extra, reply)
        if not extra:  # only the headers were bad: served as if they were absent
            assert status == 200, (headers, extra, reply)
    assert http_json("GET", f"{gateway.url}/health")[0] == 200
