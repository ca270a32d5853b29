"""Huge prompts cost a neuron bounded memory and time: refused by size, counted under admission.

The tiny chat model has a 40,960-token context and a byte-level vocabulary whose longest entry
is 13 bytes, so its size bound is 40,960 * 13 = 532,480 bytes; 20 MB is far past it. Before
these limits, three concurrent 20 MB counts took 48 s and took the neuron from 356 MB to 8.2 GB.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.daemons import Daemon, LineStream, http_json
from tests.neuron.huge_prompts import HUGE, MIB, PEAK_GROWTH_BOUND, concurrently, post_raw

pytestmark = pytest.mark.slow


def huge_chat(content_bytes: int = HUGE, **extra: Any) -> bytes:
    message = {"role": "user", "content": "hello world " * (content_bytes // 12)}
    return json.dumps({"model": "tiny-chat", "messages": [message], **extra}).encode()


def load(neuron: Daemon) -> None:
    status, _, _ = http_json(
        "POST", f"{neuron.url}/models/load", {"model": "tiny-chat", "wait": True}, timeout=120
    )
    assert status == 200


def health(neuron: Daemon) -> dict[str, Any]:
    body: dict[str, Any] = http_json("GET", f"{neuron.url}/health")[1]
    return body


def assert_refused_by_size(status: int, body: dict[str, Any]) -> None:
    assert status == 400, body
    assert body["error"]["code"] == "context_length_exceeded", body
    assert body["error"]["type"] == "invalid_request_error"
    # Sized, not counted: the message names bytes, never a token count of the whole prompt.
    assert "bytes" in body["error"]["message"] and "40960 tokens" in body["error"]["message"], body


def test_three_huge_counts_are_refused_by_size_in_bounded_memory_and_sigterm_still_works(
    start_neuron: Callable[..., Daemon],
) -> None:
    neuron = start_neuron("shutdown_timeout_s = 10\n")
    load(neuron)
    described = http_json("GET", f"{neuron.url}/models")[1]["data"]
    chat_model = next(m for m in described if m["id"] == "tiny-chat")
    assert chat_model["max_prompt_bytes"] == chat_model["context_length"] * 13
    start_rss = health(neuron)["rss_bytes"]

    results = concurrently(f"{neuron.url}/v1/count_tokens", huge_chat(), 3)

    assert len(results) == 3
    for status, body, seconds in results:
        assert_refused_by_size(status, body)
        assert seconds < 30, f"a refusal took {seconds:.1f}s"
    after = health(neuron)
    assert after["max_rss_bytes"] - start_rss < PEAK_GROWTH_BOUND, (start_rss, after["max_rss_bytes"])
    assert after["models"]["tiny-chat"] == {"state": "ready", "in_flight": 0, "queued": 0}

    started = time.monotonic()
    assert neuron.stop(timeout=30) == 0
    assert time.monotonic() - started < 10 + 5  # shutdown_timeout_s and the process's own exit


def test_a_chat_far_over_the_context_is_refused_without_tokenizing_it(
    start_neuron: Callable[..., Daemon],
) -> None:
    neuron = start_neuron()
    load(neuron)
    for stream in (False, True):
        started = time.monotonic()
        status, body = post_raw(f"{neuron.url}/v1/chat/completions", huge_chat(stream=stream))
        assert_refused_by_size(status, body)
        assert time.monotonic() - started < 30
    prompt = "hello world " * (HUGE // 12)
    data = json.dumps({"model": "tiny-chat", "prompt": prompt, "max_tokens": 2}).encode()
    status, body = post_raw(f"{neuron.url}/v1/completions", data)
    assert_refused_by_size(status, body)
    assert body["error"]["param"] == "prompt"
    status, _, _ = http_json(
        "POST", f"{neuron.url}/models/load", {"model": "tiny-embed", "wait": True}, timeout=120
    )
    assert status == 200
    data = json.dumps({"model": "tiny-embed", "input": ["short", prompt]}).encode()
    status, body = post_raw(f"{neuron.url}/v1/embeddings", data)
    assert status == 400 and body["error"]["code"] == "context_length_exceeded", body
    assert body["error"]["param"] == "input[1]" and "bytes" in body["error"]["message"], body
    assert health(neuron)["models"]["tiny-chat"] == {"state": "ready", "in_flight": 0, "queued": 0}


def test_a_prompt_under_the_size_bound_keeps_its_exact_count(start_neuron: Callable[..., Daemon]) -> None:
    neuron = start_neuron()
    load(neuron)
    request = {"model": "tiny-chat", "messages": [{"role": "user", "content": "word " * 60000}]}
    status, counted, _ = http_json("POST", f"{neuron.url}/v1/count_tokens", request)
    assert status == 200 and counted["prompt_tokens"] > counted["context_length"]
    status, reply, _ = http_json("POST", f"{neuron.url}/v1/chat/completions", request)
    assert status == 400
    assert f"but the prompt has {counted['prompt_tokens']} tokens" in reply["error"]["message"]


def test_count_tokens_waits_for_an_admission_slot(start_neuron: Callable[..., Daemon]) -> None:
    neuron = start_neuron("[admission]\nmax_in_flight = 1\nmax_queued = 0\nmax_wait_s = 5\n")
    load(neuron)
    count = {"model": "tiny-chat", "messages": [{"role": "user", "content": "count me"}]}
    hold = {**count, "max_tokens": 30000, "ignore_eos": True, "stream": True}
    with LineStream(f"{neuron.url}/v1/chat/completions", "POST", hold) as stream:
        assert stream.status == 200
        assert health(neuron)["models"]["tiny-chat"]["in_flight"] == 1
        status, body, headers = http_json("POST", f"{neuron.url}/v1/count_tokens", count)
        assert status == 503 and body["error"]["code"] == "model_overloaded", body
        assert int(headers["retry-after"]) >= 1
    deadline = time.monotonic() + 10
    while health(neuron)["models"]["tiny-chat"]["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.02)
    status, body, _ = http_json("POST", f"{neuron.url}/v1/count_tokens", count)
    assert status == 200 and body["prompt_tokens"] > 0
    assert health(neuron)["models"]["tiny-chat"] == {"state": "ready", "in_flight": 0, "queued": 0}


def test_the_body_limit_is_configurable_and_applies_to_every_route(
    start_neuron: Callable[..., Daemon],
) -> None:
    neuron = start_neuron(f"max_body_bytes = {MIB}\n")
    load(neuron)
    too_big = huge_chat(2 * MIB)
    for path in (
        "/v1/count_tokens",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/models/load",
    ):
        status, body = post_raw(neuron.url + path, too_big)
        assert status == 413, (path, body)
    status, body = post_raw(f"{neuron.url}/v1/count_tokens", huge_chat(MIB // 2))
    assert status == 200, body  # under both the body limit and the size bound: counted exactly
    assert neuron.alive()
