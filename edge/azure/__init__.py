"""The Azure AI Model Inference API: routes served bare (`/embeddings`) and under `/models`, each with
`?api-version=`, answering errors in Azure's shapes. `app.py` mounts them; each API area adds its route
table to `app.ROUTE_TABLES`.
"""
