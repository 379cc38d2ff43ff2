"""Store implementations behind the protocols in ``runtime.stores.base``."""
