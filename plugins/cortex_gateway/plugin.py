"""Entry point of the gateway plugin: contributes the gateway API to the ``gateway`` role."""

from __future__ import annotations

from cortex_kernel.hookspecs import hookimpl
from cortex_kernel.kernel import AppPart, Kernel, Role


@hookimpl(trylast=True)
def register_app_parts(role: Role, kernel: Kernel) -> list[AppPart] | None:
    if role != "gateway":
        return None
    from cortex_gateway.app import gateway_part

    return [gateway_part(kernel)]
