"""Foundry Local's own routes: the catalog, downloads, imports, loading and unloading, status and device."""
