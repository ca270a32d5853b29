"""Entry point of the Responses dialect plugin: the dialect for the gateway, and its ``[responses]``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cortex_kernel.dialect import Dialect
from cortex_kernel.hookspecs import hookimpl
from cortex_responses.settings import RESPONSES_TABLE

if TYPE_CHECKING:
    import msgspec

    from cortex_kernel.config.tables import ConfigTable
    from cortex_kernel.kernel import Kernel


@hookimpl
def register_config_tables() -> list[ConfigTable[msgspec.Struct]]:
    return [RESPONSES_TABLE]


@hookimpl(trylast=True)
def register_dialects(kernel: Kernel) -> list[Dialect]:
    from cortex_kernel.config.schema import CortexConfig
    from cortex_responses.dialect import ResponsesDialect

    config = kernel.config.value
    if not isinstance(config, CortexConfig):
        return [ResponsesDialect()]
    settings = kernel.config.table(RESPONSES_TABLE)
    return [ResponsesDialect(settings, max_body_bytes=config.gateway.max_body_bytes)]
