"""The embeddings service: embedding models through plain onnxruntime and `tokenizers`, batched across calls."""
