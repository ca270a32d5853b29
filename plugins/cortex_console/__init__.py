"""The operator console: the fleet, live activity, recent requests and a playground at /console."""
