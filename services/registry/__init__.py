"""The registry service: which models are in the cache on disk, under which names, and where."""
