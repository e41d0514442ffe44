"""Azure's POST /embeddings and POST /images/embeddings.

Azure adds `input_type` and the int8/uint8/binary/ubinary encodings to OpenAI's request, and answers what
the model cannot do (dimensions it was not trained for, an input type it does not know, image inputs to a
text model) with a 422 rather than a 400.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from typing import Any

from aiohttp import web

from edge.azure.errors import Unprocessable, unsupported
from edge.azure.params import DEPLOYMENT_HEADER, deployment, extra_parameters
from edge.mesh.backends import BACKENDS
from edge.mesh.embeddings import embed_images_request, embed_request
from edge.openai.embeddings import response_body
from edge.openai.embeddings_schemas import (AZURE_IMAGE_SPEC_FIELDS, AZURE_SPEC_FIELDS, MODEL_EXTRAS,
                                            AzureEmbeddingsRequest, AzureImageEmbeddingsRequest)
from edge.openai.parsing import parse_json_object, validate
from ingot.common.errors import FailedPrecondition, IngotError, InvalidArgument

routes = web.RouteTableDef()

DATA_URL = re.compile(r"data:(image/[A-Za-z0-9.+-]+);base64,(.*)", re.S)


def _azure_body(reply: Any, encoding_format: str) -> dict[str, Any]:
    # The azure-ai-inference SDK requires an id on an embeddings result.
    return {"id": f"embd-{uuid.uuid4().hex}", **response_body(reply, encoding_format)}


@routes.post("/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    body = extra_parameters(request, parse_json_object(await request.read()), spec=AZURE_SPEC_FIELDS,
                            model_extras=MODEL_EXTRAS)
    options = validate(AzureEmbeddingsRequest, body)
    model = deployment(request, options.model)
    try:
        reply = await request.config_dict[BACKENDS].embed(embed_request(model, options, input_type=options.input_type))
    except InvalidArgument as error:
        raise unsupported(error, body) from None
    return web.json_response(text=json.dumps(_azure_body(reply, options.encoding_format or "float")))


def _image(index: int, data_url: str) -> tuple[bytes, str]:
    param = f"input[{index}].image"
    match = DATA_URL.fullmatch(data_url)
    if match is None:
        raise InvalidArgument(f"Invalid value for '{param}': expected a data URL "
                              "(data:image/{format};base64,{data}).", param=param)
    try:
        image = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"Invalid value for '{param}': the data URL's base64 does not decode.",
                              param=param) from None
    return image, match.group(1)


@routes.post("/images/embeddings")
async def image_embeddings(request: web.Request) -> web.Response:
    body = extra_parameters(request, parse_json_object(await request.read()), spec=AZURE_IMAGE_SPEC_FIELDS,
                            model_extras=())
    options = validate(AzureImageEmbeddingsRequest, body)
    # Unlike text, no deployment named is no error: the service may pick any image embedding model.
    model = options.model or request.headers.get(DEPLOYMENT_HEADER, "").strip()
    images = [(*_image(index, item.image), item.text) for index, item in enumerate(options.input)]
    proto = embed_images_request(model, images, dimensions=options.dimensions, input_type=options.input_type)
    try:
        reply = await request.config_dict[BACKENDS].embed_images(proto)
    except FailedPrecondition as error:
        if error.code != "image_embeddings_unavailable":
            raise
        # Never a made-up vector: the client learns that no model here embeds images.
        raise Unprocessable(error.message, param="input", value=None, code=error.code,
                            message=error.message) from None
    except IngotError as error:
        raise unsupported(error, body) from None
    return web.json_response(text=json.dumps(_azure_body(reply, options.encoding_format or "float")))
