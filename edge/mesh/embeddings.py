"""Embeddings requests as the embeddings service takes them, from the surfaces' validated bodies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ingot.embeddings.v1 import embeddings_service_pb2 as pb

if TYPE_CHECKING:
    from edge.openai.embeddings_schemas import _Common

INPUT_TYPES = {"text": pb.INPUT_TYPE_TEXT, "query": pb.INPUT_TYPE_QUERY, "document": pb.INPUT_TYPE_DOCUMENT}


def embed_request(model: str, request: _Common, *, input_type: str | None = None) -> pb.EmbedRequest:
    proto = pb.EmbedRequest(
        model=model,
        inputs=[pb.EmbedInput(text=item) if isinstance(item, str) else pb.EmbedInput(tokens=pb.TokenIds(ids=item))
                for item in request.inputs()],
        instruction=request.instruction or "",
        fail_on_overflow=request.truncate is False,
    )
    if request.dimensions is not None:
        proto.dimensions = request.dimensions
    if input_type is not None:
        proto.input_type = INPUT_TYPES[input_type]
    return proto


def embed_images_request(model: str, images: Sequence[tuple[bytes, str, str | None]], *,
                         dimensions: int | None = None, input_type: str | None = None) -> pb.EmbedImagesRequest:
    """`images` as (bytes, media type, the text that goes with the image or None)."""
    proto = pb.EmbedImagesRequest(model=model)
    for image, media_type, text in images:
        item = pb.ImageInput(image=image, media_type=media_type)
        if text is not None:
            item.text = text
        proto.inputs.append(item)
    if dimensions is not None:
        proto.dimensions = dimensions
    if input_type is not None:
        proto.input_type = INPUT_TYPES[input_type]
    return proto
