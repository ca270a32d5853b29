"""The merged ``/v1/models``: every catalogue model, loaded or not, plus what neurons report."""

from __future__ import annotations

import msgspec

from cortex_gateway.fleet import Fleet
from cortex_kernel.catalogue_entry import CatalogueEntry, ModelLocation
from cortex_kernel.config.schema import Catalogue


def _entry(fleet: Fleet, catalogue: Catalogue, model_id: str, aliases: list[str]) -> CatalogueEntry:
    profile = catalogue.get(model_id)
    locations = [
        ModelLocation(node=node.name, state=node.models[model_id].state)
        for node in fleet
        if node.up and model_id in node.models
    ]
    context = next(
        (
            n.models[model_id].context_length
            for n in fleet
            if model_id in n.models and n.models[model_id].context_length
        ),
        profile.context_length if profile else None,
    )
    entry = CatalogueEntry(
        id=model_id,
        created=int(fleet.started),
        loaded=any(location.state == "ready" for location in locations),
        locations=locations,
        context_length=context,
        aliases=sorted(aliases),
    )
    if profile is not None:
        entry.task = profile.task
        if profile.description:
            entry.description = profile.description
    return entry


def merged_models(fleet: Fleet, catalogue: Catalogue) -> list[CatalogueEntry]:
    """OpenAI model entries with our fields: locations per node, context length, aliases."""
    ids = [profile.id for profile in catalogue.models]
    for node in fleet:
        ids.extend(model_id for model_id in node.models if model_id not in ids)
    aliases_of: dict[str, list[str]] = {}
    for alias, target in catalogue.aliases.items():
        aliases_of.setdefault(target, []).append(alias)
    entries = [_entry(fleet, catalogue, model_id, aliases_of.get(model_id, [])) for model_id in ids]
    by_id = {entry.id: entry for entry in entries}
    for alias, target in sorted(catalogue.aliases.items()):
        base = by_id.get(target) or CatalogueEntry(id=target, created=int(fleet.started))
        entries.append(msgspec.structs.replace(base, id=alias, alias_of=target, aliases=[]))
    return entries


def model_entry(fleet: Fleet, catalogue: Catalogue, model_id: str) -> CatalogueEntry | None:
    """The entry :func:`merged_models` would list for ``model_id`` (an id or an alias), built
    alone: a request names one model, and the whole listing costs a pass over every model."""
    target = catalogue.aliases.get(model_id)
    if target is not None:
        base = _known_entry(fleet, catalogue, target) or CatalogueEntry(id=target, created=int(fleet.started))
        return msgspec.structs.replace(base, id=model_id, alias_of=target, aliases=[])
    return _known_entry(fleet, catalogue, model_id)


def _known_entry(fleet: Fleet, catalogue: Catalogue, model_id: str) -> CatalogueEntry | None:
    """The entry of a model id (not an alias) in the catalogue or on a node, else ``None``."""
    if catalogue.get(model_id) is None and not any(model_id in node.models for node in fleet):
        return None
    aliases = [alias for alias, aliased in catalogue.aliases.items() if aliased == model_id]
    return _entry(fleet, catalogue, model_id, aliases)
