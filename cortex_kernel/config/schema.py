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

from collections.abc import Callable
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
    # Several cores (issue #17): how many gateway processes serve `listen` (one SO_REUSEPORT
    # listener each, under one supervisor); worker i serves metrics on metrics_listen's port + i.
    workers: PositiveInt = 1
    # The HTTP/1.1 server protocol (issue #17): the kernel's own on httptools (llhttp,
    # cortex_kernel/http11.py; less CPU per request), or hypercorn's; both hold every connection
    # to [limits]. h2c is hypercorn's alone: a listener with limits.allow_h2c uses hypercorn.
    server: Literal["hypercorn", "httptools"] = "httptools"
    # The relay's direct path (issue #17): on the httptools server, a relay request that can be
    # sent to a ready replica at once is answered from the sockets' callbacks, with no ASGI task;
    # false sends every request through the relay's ASGI lane (the path hypercorn always takes).
    direct_relay: bool = True


class EvictionSection(ConfigBase):
    """``[eviction]``: how room is made on a node for an incoming model."""

    strategy: str = "lru"
    defrag_after_cycles: NonNegativeInt = 0


# -- routing (the `routers` block) ------------------------------------------------------------


class RoutingSection(ConfigBase):
    """``[routing]``: which router orders a model's ready replicas, and the hints every router gets.

    ``strategy`` names a router plugin; a model's ``routing`` in ``models.toml`` overrides it.
    The gateway computes the hints for any router: the session key comes from the first of
    ``session_headers`` a request carries, then the dialect's body fields, then a fingerprint of
    the first ``fingerprint_bytes`` of the prompt's leading prefix; the request class from
    ``request_class_header``. A router's own settings are its plugin's table, by convention
    ``[routing.NAME]`` (:mod:`cortex_kernel.config.tables`), not keys of this one.
    """

    strategy: str = "least_loaded"
    session_headers: list[str] = msgspec.field(
        default_factory=lambda: ["x-claude-code-session-id", "x-session-id"]
    )
    request_class_header: str = "x-claude-code-request-class"
    fingerprint_bytes: PositiveInt = 4096


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


# -- residency (sleep tier, idle TTLs, anti-thrash, replicas) ---------------------------------
TtlSeconds = Annotated[float, msgspec.Meta(gt=0, le=30 * 24 * 3600)]
ReplicaCount = Annotated[int, msgspec.Meta(ge=0, le=1024)]


class ResidencySection(ConfigBase):
    """``[residency]``: fleet-wide defaults of how long idle models stay and how placement
    avoids thrashing (docs/gateway.md, "Residency")."""

    sleep: bool = True
    idle_ttl_s: TtlSeconds | None = None
    unload_ttl_s: TtlSeconds | None = None
    ttl_pinned: bool = False
    ttl_check_interval_s: PositiveFloat = 1.0
    hysteresis_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0
    thrash_window_s: Annotated[float, msgspec.Meta(ge=0, le=24 * 3600)] = 120.0
    scale_out_queued: PositiveInt = 1
    scale_out_after_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0
    # Waiting for room where a model sleeps rather than cold-loading it elsewhere (room_wait.py).
    wake_wait_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 60.0
    wake_hedge_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0


class CortexConfig(ConfigBase):
    """The gateway's configuration (``cortex.toml``): the kernel's tables.

    Plugins' own tables (a dialect's, the console's, a router's) are not fields here: the loader
    keeps them raw in ``LoadedConfig.tables`` and each plugin validates its own.
    """

    gateway: GatewaySection = msgspec.field(default_factory=GatewaySection)
    eviction: EvictionSection = msgspec.field(default_factory=EvictionSection)
    neurons: list[NeuronEndpoint] = msgspec.field(default_factory=list)
    models_config: str | None = None
    auth: AuthSection = msgspec.field(default_factory=AuthSection)
    plugins: PluginsSection = msgspec.field(default_factory=PluginsSection)
    limits: ConnectionLimits = msgspec.field(default_factory=ConnectionLimits)
    routing: RoutingSection = msgspec.field(default_factory=RoutingSection)
    residency: ResidencySection = msgspec.field(default_factory=ResidencySection)


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
    routing: str | None = None  # a router's name: overrides [routing] strategy for this model
    # -- residency: the sleep tier, idle TTLs and replicas (``None``: the [residency] default)
    sleep: bool | None = None
    idle_ttl_s: TtlSeconds | None = None
    unload_ttl_s: TtlSeconds | None = None
    min_replicas: ReplicaCount = 0
    max_replicas: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 1

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
    # An alias names one model, or an ordered list of them (a warm selector: the first one
    # ready somewhere wins; the gateway resolves it against the fleet).
    aliases: dict[str, str | list[str]] = msgspec.field(default_factory=dict)

    def targets(self, model_id: str) -> list[str]:
        """The models an alias names, in order (``[model_id]`` for a name that is no alias)."""
        target = self.aliases.get(model_id, model_id)
        return [target] if isinstance(target, str) else target

    def resolve(
        self,
        model_id: str,
        ready: Callable[[str], bool] | None = None,
        eligible: Callable[[str], bool] | None = None,
    ) -> str:
        """The concrete model id ``model_id`` names: itself, its alias target, or for a list the
        first target ``ready`` says is ready, else the first ``eligible`` one, else the first."""
        targets = self.targets(model_id)
        if ready is not None and len(targets) > 1:
            warm = next((t for t in targets if ready(t)), None)
            if warm is not None:
                return warm
            if eligible is not None:
                return next((t for t in targets if eligible(t)), targets[0])
        return targets[0] if targets else model_id

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
    # Request classes (the gateway's ``x-cortex-request-class``): a higher number is served first
    # under contention; a class not listed counts as ``main``. ``max_bypass`` bounds how often a
    # waiter may be overtaken by later arrivals before it is served in arrival order (no starvation).
    class_priority: dict[str, int] = msgspec.field(
        default_factory=lambda: {"main": 3, "subagent": 2, "compaction": 1, "auxiliary": 0}
    )
    max_bypass: NonNegativeInt = 8


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
    # Host RAM that sleeping models may hold (their weights offloaded from the devices).
    host_memory_budget_mb: PositiveInt | None = None
    max_body_bytes: PositiveInt = 32 * 1024 * 1024
    default_models: list[str | ModelProfile] = msgspec.field(default_factory=list)
    harnesses: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    admission: AdmissionSection = msgspec.field(default_factory=AdmissionSection)
    shutdown_timeout_s: PositiveFloat = 20.0
    plugins: PluginsSection = msgspec.field(default_factory=PluginsSection)
    limits: ConnectionLimits = msgspec.field(default_factory=ConnectionLimits)
    # The HTTP/1.1 server protocol, as the gateway's [gateway] server.
    server: Literal["hypercorn", "httptools"] = "httptools"


ConfigKind = Literal["cortex", "neuron", "models"]

ROOT_TYPES: dict[ConfigKind, type[ConfigBase]] = {
    "cortex": CortexConfig,
    "neuron": NeuronConfig,
    "models": Catalogue,
}
