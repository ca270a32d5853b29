"""Entry point of the Responses dialect plugin: offers the dialect to the gateway."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cortex_kernel.dialect import Dialect
from cortex_kernel.hookspecs import hookimpl

if TYPE_CHECKING:
    from cortex_kernel.kernel import Kernel


@hookimpl(trylast=True)
def register_dialects(kernel: Kernel) -> list[Dialect]:
    from cortex_kernel.config.schema import CortexConfig
    from cortex_responses.dialect import ResponsesDialect

    config = kernel.config.value
    if not isinstance(config, CortexConfig):
        return [ResponsesDialect()]
    return [ResponsesDialect(config.responses, max_body_bytes=config.gateway.max_body_bytes)]
