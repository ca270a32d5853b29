"""The built-in routers: ``least_loaded``, ``affinity`` and ``kv_aware`` (``register_routers``)."""
