"""Typed configuration: the schema (``schema``), the one loader (``loader``) and its errors."""

from __future__ import annotations

from cortex_kernel.config.errors import ConfigError
from cortex_kernel.config.loader import LoadedConfig, find_config_file, load_config, search_paths
from cortex_kernel.config.schema import (
    AdmissionSection,
    Catalogue,
    ConfigKind,
    CortexConfig,
    EvictionSection,
    GatewaySection,
    ModelProfile,
    NeuronConfig,
    NeuronEndpoint,
    PluginsSection,
)
from cortex_kernel.config.tables import ConfigTable

__all__ = [
    "AdmissionSection",
    "Catalogue",
    "ConfigError",
    "ConfigKind",
    "ConfigTable",
    "CortexConfig",
    "EvictionSection",
    "GatewaySection",
    "LoadedConfig",
    "ModelProfile",
    "NeuronConfig",
    "NeuronEndpoint",
    "PluginsSection",
    "find_config_file",
    "load_config",
    "search_paths",
]
