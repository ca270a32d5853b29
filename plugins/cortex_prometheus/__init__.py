"""Prometheus telemetry for the gateway: an event sink feeding its own registry, served on
``gateway.metrics_listen``. See ``docs/metrics.md`` for every series it exports."""
