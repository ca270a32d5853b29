"""Entry point of the neuron plugin: contributes the neuron API to the ``neuron`` role."""

from __future__ import annotations

from cortex_kernel.hookspecs import hookimpl
from cortex_kernel.kernel import AppPart, Kernel, Role


@hookimpl(trylast=True)
def register_app_parts(role: Role, kernel: Kernel) -> list[AppPart] | None:
    if role != "neuron":
        return None
    from cortex_neuron.app import neuron_part

    return [neuron_part(kernel)]
