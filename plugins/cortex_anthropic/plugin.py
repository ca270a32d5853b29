"""Entry point of the Anthropic dialect plugin: offers the dialect to the gateway."""

from __future__ import annotations

from cortex_kernel.dialect import Dialect
from cortex_kernel.hookspecs import hookimpl


@hookimpl(trylast=True)
def register_dialects() -> list[Dialect]:
    from cortex_anthropic.dialect import AnthropicDialect

    return [AnthropicDialect()]
