"""The gateway's view of one model, as the dialect seam hands it to dialect plugins.

One entry of the merged catalogue: a model from ``models.toml`` or one a neuron reports, with
where it is loaded. It is also the body of the gateway's OpenAI ``GET /v1/models`` entries, so
its field order and names are that wire format's (OpenAI's four fields first, then ours).
"""

from __future__ import annotations

import msgspec


class ModelLocation(msgspec.Struct, kw_only=True, frozen=True):
    """A node that holds the model, and the model's state there (``ready``, ``loading``, ...)."""

    node: str
    state: str


class CatalogueEntry(msgspec.Struct, kw_only=True):
    """One model (or alias) of the merged catalogue.

    ``task``, ``description``, ``alias_of`` and ``alias_targets`` are absent (``UNSET``) when
    unknown or not an alias, and then left out of the encoded entry; ``context_length`` is
    ``None`` when neither a neuron nor the catalogue says.
    """

    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "cortex"
    loaded: bool = False
    locations: list[ModelLocation] = msgspec.field(default_factory=list)
    context_length: int | None = None
    aliases: list[str] = msgspec.field(default_factory=list)
    task: str | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType = msgspec.UNSET
    alias_of: str | msgspec.UnsetType = msgspec.UNSET
    alias_targets: list[str] | msgspec.UnsetType = msgspec.UNSET  # a warm selector's list, in order

    @property
    def serves_chat(self) -> bool:
        """Whether it answers chat (a model of unknown task is taken to)."""
        return self.task is msgspec.UNSET or self.task == "chat"
