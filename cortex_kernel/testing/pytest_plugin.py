"""A pytest plugin (entry point ``pytest11``) giving plugin authors the kernel's fixtures.

Fixtures:

* ``cortex_pm`` — a fresh plugin manager with no entry points loaded, so a test registers only
  the plugins it needs and never sees another test's.
* ``scripted_neuron`` — a started :class:`cortex_kernel.testing.scripted_neuron.ScriptedNeuron`
  (a neuron double on loopback whose replies the test scripts), stopped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pluggy
import pytest

from cortex_kernel.plugins import build_plugin_manager

if TYPE_CHECKING:
    from cortex_kernel.testing.scripted_neuron import ScriptedNeuron


@pytest.fixture
def cortex_pm() -> Iterator[pluggy.PluginManager]:
    """A plugin manager with the kernel's hookspecs and nothing else registered."""
    pm = build_plugin_manager(load_entrypoints=False)
    yield pm
    for name, plugin in list(pm.list_name_plugin()):
        if plugin is not None:
            pm.unregister(plugin, name=name)


@pytest.fixture
def scripted_neuron() -> Iterator[ScriptedNeuron]:
    """A scripted neuron double on loopback (imported here: it needs the ``openai`` package)."""
    from cortex_kernel.testing.scripted_neuron import ScriptedNeuron

    neuron = ScriptedNeuron().start()
    try:
        yield neuron
    finally:
        neuron.stop()
