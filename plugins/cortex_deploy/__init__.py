"""Rolling fleet deploys over ssh: ``cortex-kernel deploy --manifest FLEET.toml``."""
