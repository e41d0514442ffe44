"""The HTTP edge: OpenAI's REST and SSE API in front of the gRPC services.

It owns HTTP only: routes, request schemas, the error shapes and SSE framing, and the translation to and
from protobuf. It never touches model files or onnxruntime.
"""
