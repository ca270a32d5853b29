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

import msgspec
from starlette.requests import Request

from cortex_kernel.catalogue_entry import CatalogueEntry
from cortex_kernel.errors import NotFound

_WORDS = {"ready": "loaded", "loading": "loading", "waking": "loading", "sleeping": "sleeping"}
_RANK = {"loaded": 3, "loading": 2, "sleeping": 1, "unloaded": 0}


class RouterStatus(msgspec.Struct, frozen=True):
    """llama.cpp's ``status``: ``loaded``, ``loading``, ``sleeping`` or ``unloaded``."""

    value: str


class RouterMeta(msgspec.Struct, frozen=True):
    """llama.cpp's ``meta``: the context window Zed sizes its conversations by."""

    n_ctx: int


class ModelListing(CatalogueEntry, kw_only=True):
    """One ``GET /v1/models`` entry: the catalogue entry plus llama.cpp's router fields."""

    display_name: str | msgspec.UnsetType = msgspec.UNSET
    status: RouterStatus | msgspec.UnsetType = msgspec.UNSET
    meta: RouterMeta | msgspec.UnsetType = msgspec.UNSET


def router_status(states: list[str]) -> str:
    """llama.cpp's ``status.value`` for a model whose replicas are in ``states``."""
    words = [_WORDS.get(state, "unloaded") for state in states]
    return max(words, key=_RANK.__getitem__, default="unloaded")


def entry_status(entry: CatalogueEntry) -> str:
    """llama.cpp's ``status.value`` of one merged catalogue entry."""
    return router_status([location.state for location in entry.locations])


def listing(entry: CatalogueEntry) -> ModelListing:
    """The ``/v1/models`` entry of one merged catalogue entry, with the llama.cpp router fields."""
    fields = {f: getattr(entry, f) for f in entry.__struct_fields__}
    return ModelListing(
        **fields,
        display_name=entry.id,
        status=RouterStatus(entry_status(entry)),
        meta=RouterMeta(entry.context_length) if entry.context_length else msgspec.UNSET,
    )


class _Settings(msgspec.Struct, frozen=True):
    n_ctx: int


class _Modalities(msgspec.Struct, frozen=True):
    vision: bool = False
    audio: bool = False


class _TemplateCaps(msgspec.Struct, frozen=True):
    supports_tools: bool = True
    supports_tool_calls: bool = True
    supports_preserve_reasoning: bool = False


class Props(msgspec.Struct, frozen=True):
    """``GET /props?model=ID`` in llama.cpp's shape (the fields Zed reads)."""

    model_alias: str
    default_generation_settings: _Settings
    modalities: _Modalities = _Modalities()
    chat_template_caps: _TemplateCaps = _TemplateCaps()


def props_body(entry: CatalogueEntry) -> Props:
    """``/props`` from what the gateway knows of the model.

    The gateway's harnesses render tools through the model's chat template, so tool support is
    reported; images are not (no harness here takes image input yet).
    """
    return Props(model_alias=entry.id, default_generation_settings=_Settings(n_ctx=entry.context_length or 0))


def props_for(request: Request, entries: list[CatalogueEntry]) -> Props:
    """The ``/props`` body for the model the query names; 404 (OpenAI's envelope) otherwise."""
    model = request.query_params.get("model")
    chat = {entry.id: entry for entry in entries if entry.serves_chat}
    if model is None or model not in chat:
        raise NotFound(f"model {model!r} does not exist", code="model_not_found", param="model")
    return props_body(chat[model])
