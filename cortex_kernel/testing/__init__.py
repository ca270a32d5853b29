"""Test helpers for cortex-kernel and its plugins: fixtures (:mod:`.pytest_plugin`), the harness
conformance suite (:mod:`.conformance`) and a scripted neuron double (:mod:`.scripted_neuron`)."""
