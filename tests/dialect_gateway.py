"""The real gateway app, in-process, with one configured dialect in front of one neuron.

The dialect tests (Anthropic, Responses) drive it with the official SDKs against the scripted
neuron double; the dialect object is passed in so a test can choose its settings.
"""

from __future__ import annotations

from starlette.applications import Starlette

import cortex_evictors.plugin
import cortex_gateway.plugin
from cortex_kernel.app import create_app
from cortex_kernel.config.loader import LoadedConfig
from cortex_kernel.config.schema import AuthSection, Catalogue, CortexConfig, ModelProfile, NeuronEndpoint
from cortex_kernel.dialect import Dialect
from cortex_kernel.hookspecs import hookimpl
from cortex_kernel.kernel import Kernel
from cortex_kernel.plugins import build_plugin_manager


class DialectPlugin:
    """Registers one configured dialect object."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    @hookimpl
    def register_dialects(self) -> list[Dialect]:
        return [self.dialect]


def dialect_gateway_app(
    neuron_url: str,
    dialect: Dialect,
    *,
    catalogue: tuple[str, ...],
    embedding: tuple[str, ...] = (),
    aliases: dict[str, str] | None = None,
    auth: AuthSection | None = None,
) -> Starlette:
    """The gateway plugin, the evictors and ``dialect``, pointed at the neuron at ``neuron_url``."""
    profiles = [ModelProfile(id=model, harness="scripted", min_devices=0) for model in catalogue]
    profiles += [ModelProfile(id=m, harness="scripted", min_devices=0, task="embedding") for m in embedding]
    neurons = [NeuronEndpoint(name="n1", endpoint=neuron_url)]
    config = CortexConfig(neurons=neurons, auth=auth or AuthSection())
    loaded = LoadedConfig(
        kind="cortex",
        value=config,
        path=None,
        sources={},
        catalogue=Catalogue(models=profiles, aliases=dict(aliases or {})),
    )
    pm = build_plugin_manager(
        load_entrypoints=False,
        extra=[
            ("gateway", cortex_gateway.plugin),
            ("evictors", cortex_evictors.plugin),
            (dialect.name, DialectPlugin(dialect)),
        ],
    )
    return create_app(Kernel(role="gateway", config=loaded, pm=pm))
