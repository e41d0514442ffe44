"""Build-time tools that turn shipped weights into servable models under HOME/models.

A model is a folder `models/<publisher>/<folder_name>/` that holds an `inference_model.json` manifest. Folders
are assembled under `models/.staging/` and renamed into place only when complete; the manifest is the last
file written, so a folder without one is never a model, and folders whose name starts with "." are never
models. Most modules need the `build` extra (torch, transformers, ...) and serving never imports them; the
GGUF importer (`gguf*.py`) needs only runtime dependencies (NumPy, gguf, onnx, onnxruntime, tokenizers), and
the registry runs it in a child process for `POST /openai/import`.
"""
