"""The mesh's message types as the surfaces name them, and the few questions they ask of a message.

Surfaces annotate with these names and read the messages' fields, but never build a message or compare an
enum: that is this package's job, so a change of contract stays inside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format

from ingot.common.v1 import common_pb2
from ingot.embeddings.v1 import embeddings_service_pb2 as embeddings_pb2
from ingot.inference.v1 import inference_service_pb2 as inference_pb2
from ingot.registry.v1 import registry_service_pb2 as registry_pb2

ModelInfo = registry_pb2.ModelInfo
Deployment = registry_pb2.Deployment
CatalogEntry = registry_pb2.CatalogEntry
DownloadProgress = registry_pb2.DownloadProgress
LoadedModel = inference_pb2.LoadedModel
GenerateRequest = inference_pb2.GenerateRequest
GenerateResponse = inference_pb2.GenerateResponse
TokenLogprob = inference_pb2.TokenLogprob
EmbedResponse = embeddings_pb2.EmbedResponse

# One message of a generation, tagged with the position of the call (the prompt of a batch) it came from.
Tagged = tuple[int, GenerateResponse]

# A model the registry did not classify is left to the inference service to accept or refuse.
_CHAT_TASKS = (common_pb2.MODEL_TASK_CHAT_COMPLETION, common_pb2.MODEL_TASK_UNSPECIFIED)

# Foundry Local's names for a model's task.
TASKS = {
    common_pb2.MODEL_TASK_CHAT_COMPLETION: "chat-completion",
    common_pb2.MODEL_TASK_EMBEDDINGS: "embeddings",
}

# Azure's ModelType values.
AZURE_MODEL_TYPES = {
    common_pb2.MODEL_TASK_CHAT_COMPLETION: "chat_completion",
    common_pb2.MODEL_TASK_EMBEDDINGS: "embeddings",
}

# Databricks' task names for what a serving endpoint serves. A chat model serves the completions task too
# (through its chat template), but Databricks lists such an endpoint as a chat one.
DATABRICKS_TASKS = {
    common_pb2.MODEL_TASK_CHAT_COMPLETION: "llm/v1/chat",
    common_pb2.MODEL_TASK_EMBEDDINGS: "llm/v1/embeddings",
}


def serves_chat(model: ModelInfo) -> bool:
    return model.task in _CHAT_TASKS


def task_name(model: ModelInfo) -> str:
    return TASKS.get(model.task, f"task {model.task}")


def azure_model_type(model: ModelInfo) -> str | None:
    return AZURE_MODEL_TYPES.get(model.task)


def databricks_task(model: ModelInfo) -> str | None:
    return DATABRICKS_TASKS.get(model.task)


def is_final(message: GenerateResponse) -> bool:
    """Whether `message` ends its choice (it carries a finish reason)."""
    return message.finish_reason != common_pb2.FINISH_REASON_UNSPECIFIED


def content_filtered(message: GenerateResponse) -> GenerateResponse:
    """`message` as the end of its choice by the content filter: no text, its token ids kept so usage still
    counts what the model generated."""
    return inference_pb2.GenerateResponse(index=message.index, token_ids=message.token_ids,
                                          finish_reason=common_pb2.FINISH_REASON_CONTENT_FILTER)


def struct_dict(struct: Any) -> dict[str, Any]:
    """A google.protobuf.Struct (a deployment's defaults, a catalog entry's settings) as plain JSON values."""
    return json_format.MessageToDict(struct)


def deployment_defaults(deployment: Deployment) -> Mapping[str, Any]:
    return struct_dict(deployment.default_parameters) if deployment.default_parameters.fields else {}
