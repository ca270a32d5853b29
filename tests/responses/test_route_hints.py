"""A Responses request's ``prompt_cache_key`` (Codex's conversation id) reaches the router."""

from __future__ import annotations

from cortex_anthropic.chat_protocol import ChatCompletionRequest
from cortex_kernel.routing import RouteHints
from cortex_responses.exchange import Exchange


def exchange(prompt_cache_key: str | None, user: str | None) -> Exchange:
    chat = (
        ChatCompletionRequest(model="m", messages=[], user=user)
        if user
        else ChatCompletionRequest(model="m", messages=[])
    )
    return Exchange(
        model="m", chat=chat, max_output_tokens=None, context_length=None, prompt_cache_key=prompt_cache_key
    )


def test_prompt_cache_key_and_user_become_route_hints() -> None:
    assert exchange("conv-1", "alice").hints == RouteHints(prompt_cache_key="conv-1", session_key="alice")
    assert exchange("conv-1", None).hints == RouteHints(prompt_cache_key="conv-1")
    assert exchange(None, "alice").hints == RouteHints(session_key="alice")


def test_without_either_the_router_falls_back_to_its_own_sources() -> None:
    assert exchange(None, None).hints is None
