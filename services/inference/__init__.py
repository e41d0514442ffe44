"""The inference service: chat models loaded through onnxruntime-genai, generated on one engine thread."""
