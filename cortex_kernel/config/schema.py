"""The typed configuration tree: ``cortex.toml``, ``neuron.toml`` and ``models.toml``.

Every table is a msgspec Struct that forbids unknown keys, so a misspelt key is an error that names
the key instead of a silent fall-back to its default. Every field has a default unless the file
would be meaningless without it (a model's ``id`` and ``harness``, a neuron's ``name`` and
``endpoint``), so that adding a field never breaks an existing file.

The key names follow the original cortex files (``[gateway] listen, metrics_listen``,
``[eviction] strategy, defrag_after_cycles``, ``[[neurons]] name, endpoint``, ``[[models]] id,
harness, quant, vram_mb, min_devices, min_device_vram_mb, pinned_on``); the rest are additions
documented in ``docs/configuration.md`` and the example files.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]


class ConfigBase(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every configuration table: unknown keys are rejected, fields are keyword-only."""


# ---------------------------------------------------------------------------------------------
# cortex.toml


class GatewaySection(ConfigBase):
    """``[gateway]``: where the gateway listens and how it treats traffic."""

    listen: str = "127.0.0.1:31313"
    metrics_listen: str = "127.0.0.1:31314"
    max_body_bytes: PositiveInt = 32 * 1024 * 1024
    stream_stall_timeout_s: PositiveFloat = 300.0
    shutdown_grace_s: PositiveFloat = 30.0
    neuron_token: str | None = None
    # Watching the neurons: how often each is polled, how long a poll may take, and how many
    # failed polls in a row declare it down (its loads are re-placed, its streams ended).
    poll_interval_s: PositiveFloat = 2.0
    poll_timeout_s: PositiveFloat = 5.0
    down_after_failures: PositiveInt = 3
    # How the gateway process runs (the overhead work, issue #17): its event loop; "auto" is
    # uvloop where it is installed (the "fast" extra), asyncio's own loop otherwise.
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"


class EvictionSection(ConfigBase):
    """``[eviction]``: how room is made on a node for an incoming model."""

    strategy: str = "lru"
    defrag_after_cycles: NonNegativeInt = 0


class NeuronEndpoint(ConfigBase):
    """One ``[[neurons]]`` entry: a node the gateway routes to."""

    name: str
    endpoint: str


class AuthSection(ConfigBase):
    """``[auth]``: client and admin keys, stored as ``sha256:HEX`` digests, never in clear."""

    require_api_key: bool = False
    api_keys: list[str] = msgspec.field(default_factory=list)
    admin_keys: list[str] = msgspec.field(default_factory=list)


class PluginsSection(ConfigBase):
    """``[plugins]``: operator switches over the plugin set."""

    block: list[str] = msgspec.field(default_factory=list)


class ConnectionLimits(ConfigBase):
    """``[limits]``: what one client connection may hold, per listener, on either daemon.

    Every bound here is on *receiving* a request or on an idle connection; none cuts a response
    in progress, so a stream may last as long as the generation does. docs/limits.md says why
    each default is what it is and what a client sees when one trips.
    """

    max_connections: PositiveInt = 4096
    keep_alive_timeout_s: PositiveFloat = 75.0
    header_timeout_s: PositiveFloat = 10.0
    body_timeout_s: PositiveFloat = 60.0
    allow_h2c: bool = False


class CortexConfig(ConfigBase):
    """The gateway's configuration (``cortex.toml``)."""

    gateway: GatewaySection = msgspec.field(default_factory=GatewaySection)
    eviction: EvictionSection = msgspec.field(default_factory=EvictionSection)
    neurons: list[NeuronEndpoint] = msgspec.field(default_factory=list)
    models_config: str | None = None
    auth: AuthSection = msgspec.field(default_factory=AuthSection)
    plugins: PluginsSection = msgspec.field(default_factory=PluginsSection)
    limits: ConnectionLimits = msgspec.field(default_factory=ConnectionLimits)


# ---------------------------------------------------------------------------------------------
# models.toml


class ModelProfile(ConfigBase):
    """One ``[[models]]`` entry: what a model is, where it may run and how to load it."""

    id: str
    harness: str
    source: str | None = None
    quant: str | None = None
    vram_mb: NonNegativeInt | None = None
    min_devices: NonNegativeInt = 1
    min_device_vram_mb: NonNegativeInt | None = None
    pinned_on: list[str] = msgspec.field(default_factory=list)
    priority: int | None = None
    context_length: PositiveInt | None = None
    task: Literal["chat", "embedding"] = "chat"
    trust_remote_code: bool = False
    devices: list[NonNegativeInt] | None = None
    description: str | None = None
    options: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def weights_source(self) -> str:
        """Where the harness reads weights from: ``source`` when set, else the model id."""
        return self.source or self.id

    @property
    def residency_priority(self) -> int:
        """Eviction priority: explicit, else 1000 for pinned models and 100 for the rest."""
        if self.priority is not None:
            return self.priority
        return 1000 if self.pinned_on else 100


class Catalogue(ConfigBase):
    """The model catalogue (``models.toml``)."""

    models: list[ModelProfile] = msgspec.field(default_factory=list)
    aliases: dict[str, str] = msgspec.field(default_factory=dict)

    def resolve(self, model_id: str) -> str:
        """The concrete model id ``model_id`` names: its alias target, or itself."""
        return self.aliases.get(model_id, model_id)

    def get(self, model_id: str) -> ModelProfile | None:
        """Return the profile for ``model_id`` (an alias is resolved first), or ``None``."""
        target = self.resolve(model_id)
        for profile in self.models:
            if profile.id == target:
                return profile
        return None


# ---------------------------------------------------------------------------------------------
# neuron.toml


class AdmissionSection(ConfigBase):
    """``[admission]``: the per-model bounded queue in front of every harness."""

    max_in_flight: PositiveInt = 4
    max_queued: NonNegativeInt = 16
    max_wait_s: PositiveFloat = 30.0


class NeuronConfig(ConfigBase):
    """A neuron's configuration (``neuron.toml``)."""

    listen: str = "0.0.0.0:13131"
    name: str | None = None
    token: str | None = None
    # The trust boundary (docs/security.md): listening beyond loopback without a token, and what an
    # inline profile from POST /models/load may switch on, are the operator's explicit choices.
    insecure_listen: bool = False
    allow_inline_remote_code: bool = False
    allow_inline_cache_dirs: bool = False
    models_config: str | None = None
    allow_models: list[str] | None = None
    model_roots: list[str] = msgspec.field(default_factory=list)
    cache_dir: str | None = None
    memory_budget_mb: PositiveInt | None = None
    max_body_bytes: PositiveInt = 32 * 1024 * 1024
    default_models: list[str | ModelProfile] = msgspec.field(default_factory=list)
    harnesses: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    admission: AdmissionSection = msgspec.field(default_factory=AdmissionSection)
    shutdown_timeout_s: PositiveFloat = 20.0
    plugins: PluginsSection = msgspec.field(default_factory=PluginsSection)
    limits: ConnectionLimits = msgspec.field(default_factory=ConnectionLimits)


ConfigKind = Literal["cortex", "neuron", "models"]

ROOT_TYPES: dict[ConfigKind, type[ConfigBase]] = {
    "cortex": CortexConfig,
    "neuron": NeuronConfig,
    "models": Catalogue,
}
