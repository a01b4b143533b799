"""Asset state: the store protocol, its Redis and in-memory backends, and the in-process cache."""
