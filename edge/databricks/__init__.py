"""Databricks' Foundation Model API: serving endpoints listed and described, invocations, and the
OpenAI-compatible routes under /serving-endpoints, answering errors in Databricks' shape. `app.py` mounts
them; `adapter.py` is this package's only way into the rest of the edge.
"""
