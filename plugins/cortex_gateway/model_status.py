"""The model status that llama.cpp's router reports, so clients built for it see load states.

Zed's llama.cpp provider (``crates/llama_cpp/src/llama_cpp.rs`` and
``crates/language_models/src/provider/llama_cpp.rs`` in zed-industries/zed) treats a
``/v1/models`` whose entries carry ``status.value`` as a router that loads models on demand: it
shows every listed model, reads the context window from ``meta.n_ctx``, and asks
``GET /props?model=ID`` about loaded models only (so listing never triggers a load). From
``/props`` it reads ``default_generation_settings.n_ctx``, ``chat_template_caps.supports_tools``
(or ``supports_tool_calls``), ``modalities.vision`` and
``chat_template_caps.supports_preserve_reasoning``; a loaded model whose ``/props`` fails is
taken to have no tool support, which is why the gateway answers ``/props`` as well.

The fleet's states fold into llama.cpp's words, the best replica winning: ``ready`` is
``loaded``; ``loading`` and ``waking`` are ``loading``; ``sleeping`` is ``sleeping``; anything
else (unloading, failed, on no node) is ``unloaded``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from cortex_kernel.errors import NotFound

_WORDS = {"ready": "loaded", "loading": "loading", "waking": "loading", "sleeping": "sleeping"}
_RANK = {"loaded": 3, "loading": 2, "sleeping": 1, "unloaded": 0}


def router_status(states: list[str]) -> str:
    """llama.cpp's ``status.value`` for a model whose replicas are in ``states``."""
    words = [_WORDS.get(state, "unloaded") for state in states]
    return max(words, key=_RANK.__getitem__, default="unloaded")


def router_fields(entry: dict[str, Any]) -> dict[str, Any]:
    """The llama.cpp router fields of one merged ``/v1/models`` entry."""
    fields: dict[str, Any] = {
        "display_name": entry["id"],
        "status": {"value": router_status([location["state"] for location in entry.get("locations", [])])},
    }
    if entry.get("context_length"):
        fields["meta"] = {"n_ctx": entry["context_length"]}
    return fields


def props_body(entry: dict[str, Any]) -> dict[str, Any]:
    """``GET /props?model=ID`` in llama.cpp's shape, from what the gateway knows of the model.

    The gateway's harnesses render tools through the model's chat template, so tool support is
    reported; images are not (no harness here takes image input yet).
    """
    caps = {"supports_tools": True, "supports_tool_calls": True, "supports_preserve_reasoning": False}
    return {
        "model_alias": entry["id"],
        "default_generation_settings": {"n_ctx": entry.get("context_length") or 0},
        "modalities": {"vision": False, "audio": False},
        "chat_template_caps": caps,
    }


def props_for(request: Request, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``/props`` body for the model the query names; 404 (OpenAI's envelope) otherwise."""
    model = request.query_params.get("model")
    chat = {entry["id"]: entry for entry in entries if entry.get("task", "chat") == "chat"}
    if model is None or model not in chat:
        raise NotFound(f"model {model!r} does not exist", code="model_not_found", param="model")
    return props_body(chat[model])
