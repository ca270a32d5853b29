"""A real neuron with the transformers harness, driven over HTTP and through the openai SDK."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import openai
import pytest

from tests.daemons import Daemon, LineStream, http_json
from tests.fleet_fixtures import gather_with_client

pytestmark = pytest.mark.slow


def load(
    neuron: Daemon, model: str, wait: bool = True, token: str | None = None
) -> tuple[int, Any, dict[str, str]]:
    return http_json(
        "POST", f"{neuron.url}/models/load", {"model": model, "wait": wait}, token=token, timeout=120
    )


def health(neuron: Daemon, token: str | None = None) -> Any:
    return http_json("GET", f"{neuron.url}/health", token=token)[1]


def test_load_stream_embed_unload(
    start_neuron: Callable[..., Daemon], openai_client: Callable[..., openai.OpenAI]
) -> None:
    neuron = start_neuron()
    baseline = health(neuron)["rss_bytes"]
    status, body, _ = load(neuron, "tiny-chat")
    assert status == 200 and body["state"] == "ready"
    assert body["memory_bytes"] > 0 and body["context_length"] > 0

    client = openai_client(f"{neuron.url}/v1")
    stream = client.chat.completions.create(
        model="tiny-chat",
        messages=[{"role": "user", "content": "Say something."}],
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage = chunks[-1].usage
    assert finishes in (["length"], ["stop"], ["tool_calls"])
    assert usage is not None and usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert text or finishes == ["tool_calls"]

    status, body, _ = load(neuron, "tiny-embed")
    assert status == 200
    vectors = client.embeddings.create(model="tiny-embed", input=["first text", "second, longer text"])
    assert len(vectors.data) == 2
    dims = {len(item.embedding) for item in vectors.data}
    assert len(dims) == 1
    for item in vectors.data:
        assert abs(sum(x * x for x in item.embedding) - 1.0) < 1e-3  # normalised

    loaded = health(neuron)["rss_bytes"]
    for model in ("tiny-chat", "tiny-embed"):
        status, body, _ = http_json("POST", f"{neuron.url}/models/unload", {"model": model})
        assert (status, body["state"]) == (200, "absent")
    after = health(neuron)
    assert after["models"] == {}
    # The tiny models are small; what matters is that unloading does not keep growing memory.
    assert after["rss_bytes"] <= max(loaded, baseline) * 1.05
    status, body, _ = http_json("GET", f"{neuron.url}/models")
    assert body["data"] == []


def test_default_models_load_after_the_listener_binds(start_neuron: Callable[..., Daemon]) -> None:
    neuron = start_neuron(default_models='["tiny-chat"]')
    first = health(neuron)
    assert first["activation"]["state"] in ("activating", "ready")
    deadline = time.monotonic() + 60
    while health(neuron)["activation"]["state"] != "ready" and time.monotonic() < deadline:
        time.sleep(0.05)
    final = health(neuron)
    assert final["activation"] == {
        "state": "ready",
        "pending": 0,
        "in_progress": None,
        "completed": 1,
        "failed": [],
    }
    assert final["models"]["tiny-chat"]["state"] == "ready"


def test_load_is_idempotent_and_returns_at_once(start_neuron: Callable[..., Daemon]) -> None:
    neuron = start_neuron()
    status, body, _ = load(neuron, "tiny-chat", wait=False)
    assert status in (200, 202) and body["state"] in ("loading", "ready")
    again = [load(neuron, "tiny-chat", wait=False)[1]["state"] for _ in range(3)]
    assert set(again) <= {"loading", "ready"}
    status, body, _ = load(neuron, "tiny-chat", wait=True)
    assert (status, body["state"]) == (200, "ready")
    assert health(neuron)["lifecycle_cycles"] == 1  # one load, however many asked


def test_count_tokens_matches_usage(start_neuron: Callable[..., Daemon]) -> None:
    neuron = start_neuron()
    load(neuron, "tiny-chat")
    request = {"model": "tiny-chat", "messages": [{"role": "user", "content": "count these tokens please"}]}
    status, counted, _ = http_json("POST", f"{neuron.url}/v1/count_tokens", request)
    assert status == 200
    status, reply, _ = http_json("POST", f"{neuron.url}/v1/chat/completions", {**request, "max_tokens": 2})
    assert status == 200
    assert counted["prompt_tokens"] == reply["usage"]["prompt_tokens"]


async def _chat(client: openai.AsyncOpenAI, index: int) -> int | openai.APIStatusError:
    try:
        reply = await client.chat.completions.create(
            model="tiny-chat",
            messages=[{"role": "user", "content": f"request {index}"}],
            max_tokens=48,
            temperature=0,
        )
        assert reply.usage is not None
        return reply.usage.completion_tokens
    except openai.APIStatusError as exc:
        return exc


def test_twenty_concurrent_requests_all_complete_within_the_bounds(
    start_neuron: Callable[..., Daemon],
) -> None:
    neuron = start_neuron("[admission]\nmax_in_flight = 4\nmax_queued = 16\nmax_wait_s = 60\n")
    load(neuron, "tiny-chat")

    results = asyncio.run(gather_with_client(f"{neuron.url}/v1", lambda c: [_chat(c, i) for i in range(20)]))
    assert all(isinstance(r, int) and r > 0 for r in results), results
    assert health(neuron)["models"]["tiny-chat"] == {"state": "ready", "in_flight": 0, "queued": 0}


def test_requests_past_the_queue_bound_get_503_with_retry_after(start_neuron: Callable[..., Daemon]) -> None:
    neuron = start_neuron("[admission]\nmax_in_flight = 1\nmax_queued = 3\nmax_wait_s = 60\n")
    load(neuron, "tiny-chat")

    results = asyncio.run(gather_with_client(f"{neuron.url}/v1", lambda c: [_chat(c, i) for i in range(20)]))
    served = [r for r in results if isinstance(r, int)]
    rejected = [r for r in results if isinstance(r, openai.APIStatusError)]
    assert len(served) + len(rejected) == 20
    assert len(served) >= 4  # one running and three queued are always admitted
    assert rejected, "some requests must be turned away"
    for error in rejected:
        assert error.status_code == 503
        assert int(error.response.headers["retry-after"]) >= 1
        assert isinstance(error.body, dict)
        assert error.body["code"] == "model_overloaded"
    assert health(neuron)["models"]["tiny-chat"] == {"state": "ready", "in_flight": 0, "queued": 0}


def test_client_disconnect_stops_generation_and_frees_the_slot(start_neuron: Callable[..., Daemon]) -> None:
    neuron = start_neuron()
    load(neuron, "tiny-chat")
    body = {
        "model": "tiny-chat",
        "messages": [{"role": "user", "content": "go on forever"}],
        "max_tokens": 30000,
        "ignore_eos": True,
        "temperature": 0,  # the same tokens every run
        "stream": True,
    }
    with LineStream(f"{neuron.url}/v1/chat/completions", "POST", body) as r:
        assert r.status == 200
        for line in r:
            # The first generated token: text, or reasoning or a tool call if the random model
            # happened to open a <think> or <tool_call> block.
            if '"reasoning_content"' in line or '"tool_calls"' in line:
                break
            if '"content"' in line and '"content":""' not in line:
                break
        else:
            raise AssertionError("the stream ended before the client left")
        assert health(neuron)["models"]["tiny-chat"]["in_flight"] == 1
    gone = time.monotonic()
    while health(neuron)["models"]["tiny-chat"]["in_flight"] and time.monotonic() - gone < 5:
        time.sleep(0.005)
    released_after = time.monotonic() - gone
    assert health(neuron)["models"]["tiny-chat"]["in_flight"] == 0
    assert released_after < 0.1, f"slot released {released_after * 1000:.0f} ms after the client left"
    # Generation really stopped: the neuron can serve a fresh request at once.
    status, _, _ = http_json(
        "POST", f"{neuron.url}/v1/chat/completions", {**body, "stream": False, "max_tokens": 2}
    )
    assert status == 200


def test_sigterm_unloads_models_and_exits_within_the_bound(start_neuron: Callable[..., Daemon]) -> None:
    neuron = start_neuron("shutdown_timeout_s = 10\n")
    load(neuron, "tiny-chat")
    started = time.monotonic()
    assert neuron.stop(timeout=30) == 0
    assert time.monotonic() - started < 15
    assert "did not finish" not in neuron.log_text()  # the bounded unload completed
