"""ingot's public gRPC API (protos/ingot/api/v1): the REST surface's chat, completions, embeddings and model
listing over gRPC, served by the edge process on its own port.

`messages` turns the contract's requests into the REST bodies and the REST answers back into the contract's
messages; `pipeline` is the one module that reaches the rest of the edge; `servicer` and `server` serve it.
"""
