"""Built-in eviction strategies: ``lru`` and ``priority``."""
