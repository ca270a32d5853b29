"""The merged ``/v1/models``: every catalogue model, loaded or not, plus what neurons report."""

from __future__ import annotations

from typing import Any

from cortex_gateway.fleet import Fleet
from cortex_gateway.model_status import router_fields
from cortex_kernel.config.schema import Catalogue


def merged_models(fleet: Fleet, catalogue: Catalogue) -> list[dict[str, Any]]:
    """OpenAI model entries with our fields: locations per node, context length, aliases, and
    llama.cpp's router status (see :mod:`cortex_gateway.model_status`)."""
    ids = [profile.id for profile in catalogue.models]
    for node in fleet:
        ids.extend(model_id for model_id in node.models if model_id not in ids)
    aliases_of: dict[str, list[str]] = {}
    for alias in catalogue.aliases:
        for target in catalogue.targets(alias):
            aliases_of.setdefault(target, []).append(alias)
    created = int(fleet.started)
    entries = []
    for model_id in ids:
        profile = catalogue.get(model_id)
        locations = [
            {"node": node.name, "state": node.models[model_id].state}
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
        entry: dict[str, Any] = {
            "id": model_id,
            "object": "model",
            "created": created,
            "owned_by": "cortex",
            "loaded": any(loc["state"] == "ready" for loc in locations),
            "locations": locations,
            "context_length": context,
            "aliases": sorted(aliases_of.get(model_id, [])),
        }
        if profile is not None:
            entry["task"] = profile.task
            if profile.description:
                entry["description"] = profile.description
        entries.append(entry)
    by_id = {entry["id"]: entry for entry in entries}
    for alias in sorted(catalogue.aliases):
        targets = catalogue.targets(alias)
        target = catalogue.resolve(alias, lambda t: bool(fleet.replicas(t)))
        entry = {**by_id.get(target, {}), "id": alias, "alias_of": target, "aliases": []}
        if len(targets) > 1:
            entry["alias_targets"] = targets
        entries.append(entry)
    for entry in entries:
        entry.update(router_fields(entry))
    return entries
