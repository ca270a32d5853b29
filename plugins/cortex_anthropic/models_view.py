"""``GET /v1/models`` and ``GET /v1/models/{id}`` in Anthropic's shape.

Anthropic and OpenAI clients call the same path and expect different bodies, so the gateway
asks each dialect: this one answers when the request carries ``anthropic-version`` (the SDKs
always send it; OpenAI clients never do). Only chat models are listed — an embedding model
cannot answer ``/v1/messages``. Aliases are listed too, since a client may name them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request

from cortex_anthropic.protocol import ModelInfo, ModelList
from cortex_kernel.catalogue_entry import CatalogueEntry
from cortex_kernel.errors import BadRequest

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000


def wants_anthropic_shape(request: Request) -> bool:
    return "anthropic-version" in request.headers


def model_info(entry: CatalogueEntry) -> ModelInfo:
    created = datetime.fromtimestamp(entry.created, tz=UTC)
    context = entry.context_length
    return ModelInfo(
        id=entry.id,
        display_name=entry.id,
        created_at=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        max_input_tokens=context,
        max_tokens=context,
    )


def chat_entries(models: list[CatalogueEntry]) -> list[CatalogueEntry]:
    return [entry for entry in models if entry.serves_chat]


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit: must be an integer from 1 to {MAX_LIMIT}", param="limit")
    return limit


def model_page(models: list[CatalogueEntry], query: dict[str, str]) -> ModelList:
    """One page of the listing, honouring ``limit``, ``after_id`` and ``before_id``."""
    infos = [model_info(entry) for entry in chat_entries(models)]
    limit = _limit(query.get("limit"))
    ids = [info.id for info in infos]
    after, before = query.get("after_id"), query.get("before_id")
    if before is not None:
        end = ids.index(before) if before in ids else len(ids)
        start = max(0, end - limit)
        page, has_more = infos[start:end], start > 0
    else:
        start = ids.index(after) + 1 if after is not None and after in ids else 0
        page, has_more = infos[start : start + limit], start + limit < len(infos)
    return ModelList(
        data=page,
        has_more=has_more,
        first_id=page[0].id if page else None,
        last_id=page[-1].id if page else None,
    )
