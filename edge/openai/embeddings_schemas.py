"""Embeddings request bodies (OpenAI's, with Databricks' `instruction`, and Azure's) and their `input`.

`input` is checked by hand rather than by a pydantic union, so that an error names the exact element
(`input[2]`) in OpenAI's words instead of listing union members.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from edge.openai.schemas import UINT32_MAX, RequestModel
from ingot.common.errors import InvalidArgument

Input = str | list[int]


class _Common(RequestModel):
    input: Any = None
    dimensions: int | None = Field(None, gt=0, le=UINT32_MAX)
    # Databricks' field: prepended to every input the way the model expects.
    instruction: str | None = None
    # ingot's: false makes an input longer than the model's window a 400 instead of being truncated.
    truncate: bool | None = None

    def inputs(self) -> list[Input]:
        return parse_inputs(self.input)


class OpenAIEmbeddingsRequest(_Common):
    model: str = Field(min_length=1)
    encoding_format: Literal["float", "base64"] | None = None
    # Identifies the end user to the operator; it changes no vector.
    user: str | None = None


AZURE_ENCODINGS = ("float", "base64", "int8", "uint8", "binary", "ubinary")


class AzureEmbeddingsRequest(_Common):
    # Optional: the azureml-model-deployment header may name the deployment instead.
    model: str | None = Field(None, min_length=1)
    encoding_format: Literal["float", "base64", "int8", "uint8", "binary", "ubinary"] | None = None
    input_type: Literal["text", "query", "document"] | None = None


class ImageInput(RequestModel):
    # A data URL: data:image/{format};base64,{data}.
    image: str = Field(min_length=1)
    text: str | None = None


class AzureImageEmbeddingsRequest(RequestModel):
    input: list[ImageInput] = Field(min_length=1)
    model: str | None = Field(None, min_length=1)
    dimensions: int | None = Field(None, gt=0, le=UINT32_MAX)
    encoding_format: Literal["float", "base64", "int8", "uint8", "binary", "ubinary"] | None = None
    input_type: Literal["text", "query", "document"] | None = None


# Fields of Azure's embeddings request itself; `instruction` and `truncate` are this model's extras, which
# Azure clients send only with `extra-parameters: pass-through`.
AZURE_SPEC_FIELDS = frozenset({"input", "model", "dimensions", "encoding_format", "input_type"})
MODEL_EXTRAS = frozenset({"instruction", "truncate"})
AZURE_IMAGE_SPEC_FIELDS = frozenset(AzureImageEmbeddingsRequest.model_fields)


def _bad(param: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"Invalid value for '{param}': {message}", param=param)


def _token_ids(value: Sequence[Any], param: str) -> list[int]:
    if not value:
        raise _bad(param, "a token array must not be empty.")
    for index, token in enumerate(value):
        # bool is an int in Python, not in JSON.
        if isinstance(token, bool) or not isinstance(token, int):
            raise _bad(f"{param}[{index}]", "expected a token id (an integer).")
        if not 0 <= token <= UINT32_MAX:
            raise _bad(f"{param}[{index}]", f"token id {token} is out of range.")
    return list(value)


def parse_inputs(value: Any) -> list[Input]:
    """A string, an array of strings, an array of token ids, or an array of token arrays, as OpenAI allows."""
    if value is None:
        raise InvalidArgument("Missing required parameter: 'input'.", param="input")
    if isinstance(value, str):
        if not value:
            raise _bad("input", "the input must not be an empty string.")
        return [value]
    if not isinstance(value, list):
        raise InvalidArgument("Invalid type for 'input': expected a string or an array.", param="input")
    if not value:
        raise _bad("input", "the input must not be an empty array.")
    first = value[0]
    if isinstance(first, int) and not isinstance(first, bool):
        return [_token_ids(value, "input")]
    inputs: list[Input] = []
    for index, item in enumerate(value):
        param = f"input[{index}]"
        if isinstance(first, str):
            if not isinstance(item, str):
                raise InvalidArgument(f"Invalid type for '{param}': expected a string like the other inputs.",
                                      param=param)
            if not item:
                raise _bad(param, "an input must not be an empty string.")
            inputs.append(item)
        elif isinstance(first, list):
            if not isinstance(item, list):
                raise InvalidArgument(f"Invalid type for '{param}': expected an array of token ids like the "
                                      "other inputs.", param=param)
            inputs.append(_token_ids(item, param))
        else:
            raise InvalidArgument(f"Invalid type for '{param}': expected a string or an array of token ids.",
                                  param=param)
    return inputs
