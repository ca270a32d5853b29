"""Test helpers for cortex-kernel and its plugins: fixtures, the harness conformance suite."""
