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


def _aliases_of(catalogue: Catalogue) -> dict[str, list[str]]:
    """For each model id, the aliases that name it (a warm selector names several models)."""
    aliases_of: dict[str, list[str]] = {}
    for alias in catalogue.aliases:
        for target in catalogue.targets(alias):
            aliases_of.setdefault(target, []).append(alias)
    return aliases_of


def _alias_entry(
    fleet: Fleet, catalogue: Catalogue, alias: str, base: CatalogueEntry | None
) -> CatalogueEntry:
    """An alias listed as its own entry: the model it resolves to now (the first ready target of
    a warm selector), with the selector's whole list where it has several targets."""
    targets = catalogue.targets(alias)
    target = catalogue.resolve(alias, lambda t: bool(fleet.replicas(t)))
    base = base or CatalogueEntry(id=target, created=int(fleet.started))
    entry = msgspec.structs.replace(base, id=alias, alias_of=target, aliases=[])
    if len(targets) > 1:
        entry.alias_targets = targets
    return entry


def merged_models(fleet: Fleet, catalogue: Catalogue) -> list[CatalogueEntry]:
    """OpenAI model entries with our fields: locations per node, context length, aliases."""
    ids = [profile.id for profile in catalogue.models]
    for node in fleet:
        for model_id in node.models:
            if model_id not in ids:
                ids.append(model_id)
    aliases_of = _aliases_of(catalogue)
    entries = [_entry(fleet, catalogue, model_id, aliases_of.get(model_id, [])) for model_id in ids]
    by_id = {entry.id: entry for entry in entries}
    for alias in sorted(catalogue.aliases):
        target = catalogue.resolve(alias, lambda t: bool(fleet.replicas(t)))
        entries.append(_alias_entry(fleet, catalogue, alias, by_id.get(target)))
    return entries


def model_entry(fleet: Fleet, catalogue: Catalogue, model_id: str) -> CatalogueEntry | None:
    """The entry :func:`merged_models` would list for ``model_id`` (an id or an alias), built
    alone: a request names one model, and the whole listing costs a pass over every model."""
    if model_id in catalogue.aliases:
        target = catalogue.resolve(model_id, lambda t: bool(fleet.replicas(t)))
        return _alias_entry(fleet, catalogue, model_id, _known_entry(fleet, catalogue, target))
    return _known_entry(fleet, catalogue, model_id)


def _known_entry(fleet: Fleet, catalogue: Catalogue, model_id: str) -> CatalogueEntry | None:
    """The entry of a model id (not an alias) in the catalogue or on a node, else ``None``."""
    if catalogue.get(model_id) is None and not any(model_id in node.models for node in fleet):
        return None
    return _entry(fleet, catalogue, model_id, _aliases_of(catalogue).get(model_id, []))
