"""Entry point of the Prometheus plugin: an event sink and a ``/metrics`` part for the gateway.

pluggy calls ``register_event_sinks`` and ``register_app_parts`` separately, in an order this
plugin does not control, yet both must hand out the same sink (the part serves the registry the
sink fills). The sink is therefore made once per :class:`~cortex_kernel.kernel.Kernel` and kept
in that kernel's stash, so it lives exactly as long as the kernel.
"""

from __future__ import annotations

from cortex_kernel.hookspecs import hookimpl
from cortex_kernel.kernel import AppPart, Kernel, Role
from cortex_kernel.stash import StashKey
from cortex_prometheus.exposition import metrics_route
from cortex_prometheus.sink import MetricsSink

SINK = StashKey[MetricsSink]()


def sink_for(kernel: Kernel) -> MetricsSink:
    """The one sink of ``kernel``'s gateway, made on first use."""

    def make() -> MetricsSink:
        catalogue = [profile.id for profile in kernel.config.catalogue.models]
        return MetricsSink(catalogue, [neuron.name for neuron in kernel.config.value.neurons])

    return kernel.stash.setdefault(SINK, make)


@hookimpl(trylast=True)
def register_event_sinks(role: Role, kernel: Kernel) -> list[MetricsSink] | None:
    if role != "gateway":
        return None
    return [sink_for(kernel)]


@hookimpl(trylast=True)
def register_app_parts(role: Role, kernel: Kernel) -> list[AppPart] | None:
    if role != "gateway":
        return None
    return [AppPart(name="prometheus", routes=[metrics_route(sink_for(kernel).registry)], listener="metrics")]
