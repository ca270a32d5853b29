"""A client that leaves stops the generation it asked for, streamed or not."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import anthropic
import pytest
from starlette.requests import Request

from cortex_anthropic.disconnect import ClientGone, until_disconnect
from tests.anthropic.scripted import chunk, reply
from tests.anthropic.sse import request
from tests.dialect_gateway import Gateway


def test_a_streaming_client_that_leaves_closes_the_neuron_stream(
    gateway: Gateway[anthropic.Anthropic],
) -> None:
    gateway.neuron.then(reply(chunk(content="first words"), 5.0, chunk(content="never read")))
    body = {**request(), "stream": True}
    with gateway.http.stream("POST", "/v1/messages", json=body) as response:
        for line in response.iter_lines():
            if "first words" in line:
                break
    assert gateway.neuron.wait_for_disconnects(1)


class _LeavingClient:
    """The ASGI ``receive`` of a request whose client goes away after ``after_s`` seconds."""

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s

    async def receive(self) -> dict[str, Any]:
        await asyncio.sleep(self.after_s)
        return {"type": "http.disconnect"}


async def test_a_non_streamed_request_is_cancelled_when_its_client_leaves() -> None:
    cancelled = asyncio.Event()

    async def generate() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "too late"

    with pytest.raises(ClientGone):
        await asyncio.wait_for(until_disconnect(cast(Request, _LeavingClient(0.05)), generate()), 5)
    assert cancelled.is_set()


async def test_a_non_streamed_request_that_finishes_first_returns_its_result() -> None:
    async def generate() -> str:
        return "done"

    assert await until_disconnect(cast(Request, _LeavingClient(5)), generate()) == "done"


def test_unknown_fields_and_betas_are_logged_at_debug_only(
    gateway: Gateway[anthropic.Anthropic], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cortex_anthropic")
    response = gateway.http.post(
        "/v1/messages",
        json={**request(), "context_management": {"edits": []}, "speed": "fast"},
        headers={"anthropic-beta": "made-up-2099-01-01"},
    )
    assert response.status_code == 200
    records = [r for r in caplog.records if r.name.startswith("cortex_anthropic")]
    assert all(r.levelno == logging.DEBUG for r in records)
    text = " ".join(r.getMessage() for r in records)
    assert "context_management, speed" in text and "made-up-2099-01-01" in text
