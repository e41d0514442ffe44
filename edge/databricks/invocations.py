"""POST /serving-endpoints/{name}/invocations: Databricks' one route for every task of an endpoint.

The body says the task: `messages` is chat, `prompt` completions, `input` embeddings; the endpoint is the
model. What remains is OpenAI's request and goes through the same pipelines as /v1/*, with one difference:
a string prompt on a chat model goes through its chat template unless `use_raw_prompt` is true, as
Databricks' completions task serves it.

databricks-sdk's `query()` adds fields of its own: `client_request_id` and `usage_context` (logged with the
request) and `extra_params`, string values handed to the model as if they were top-level parameters
(`{"top_k": "5"}` is `"top_k": 5`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from edge.databricks import adapter
from ingot.common.errors import InvalidArgument

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

TASK_FIELDS = ("messages", "prompt", "input")
# What each task of an endpoint accepts.
ACCEPTS = {"llm/v1/chat": ("messages", "prompt"), "llm/v1/embeddings": ("input",)}
# Classic MLflow model inputs, which a foundation-model endpoint has no model for.
CLASSIC_FIELDS = ("dataframe_records", "dataframe_split", "instances", "inputs")
MAX_REQUEST_ID = 256


def _string_map(body: dict[str, Any], field: str) -> dict[str, Any]:
    value = body.pop(field, None)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"Invalid type for '{field}': expected an object.", param=field)
    for key, item in value.items():
        if isinstance(item, (dict, list)):
            raise InvalidArgument(f"Invalid type for '{field}.{key}': expected a string.", param=f"{field}.{key}")
    return value


def _from_string(value: Any) -> Any:
    """An extra_params value as the parameter it stands for: "5" is 5, "true" is true, "[\"x\"]" a list, and
    any other string stays a string."""
    if not isinstance(value, str):
        return value
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return value if isinstance(decoded, str) else decoded


def take_sdk_fields(body: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The body without the SDK's own fields, `extra_params` merged into it; and the names that came from
    extra_params, so an error about one of them can say where it was."""
    request_id = body.pop("client_request_id", None)
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > MAX_REQUEST_ID):
        raise InvalidArgument(f"Invalid value for 'client_request_id': expected a string of at most {MAX_REQUEST_ID} "
                              "characters.", param="client_request_id")
    usage_context = _string_map(body, "usage_context")
    extra = _string_map(body, "extra_params")
    if request_id is not None or usage_context:
        log.info("databricks request %r with usage context %s", request_id, usage_context)
    for key, value in extra.items():
        if key in body or key in ("model", "client_request_id", "usage_context", "extra_params"):
            raise InvalidArgument(f"Invalid value for 'extra_params.{key}': '{key}' is also set outside "
                                  "extra_params; set it once.", param=f"extra_params.{key}")
        body[key] = _from_string(value)
    return body, set(extra)


def task_field(body: dict[str, Any], endpoint: adapter.Endpoint) -> str:
    present = [field for field in TASK_FIELDS if field in body]
    classic = [field for field in CLASSIC_FIELDS if field in body]
    if classic:
        raise InvalidArgument(f"Invalid value for '{classic[0]}': '{endpoint.name}' is a foundation model endpoint; "
                              "send 'messages' (chat), 'prompt' (completions) or 'input' (embeddings).",
                              param=classic[0])
    if not present:
        raise InvalidArgument("Missing required parameter: the body needs 'messages' (chat), 'prompt' "
                              "(completions) or 'input' (embeddings).", param="messages")
    if len(present) > 1:
        raise InvalidArgument(f"Invalid value for '{present[1]}': send only one of 'messages', 'prompt' and "
                              f"'input'; this body has {' and '.join(present)}.", param=present[1])
    field = present[0]
    if field not in ACCEPTS[endpoint.task]:
        wanted = " or ".join(f"'{name}'" for name in ACCEPTS[endpoint.task])
        raise InvalidArgument(f"Invalid value for '{field}': the endpoint '{endpoint.name}' serves the task "
                              f"{endpoint.task}; send {wanted}.", param=field)
    return field


@routes.post("/serving-endpoints/{name}/invocations")
async def invocations(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    body = adapter.parse_json_object(await request.read())
    endpoint = await adapter.endpoint(request, name)
    body, from_extra = take_sdk_fields(body)
    if body.get("model") not in (None, name):
        raise InvalidArgument(f"Invalid value for 'model': this endpoint is '{name}'; the path names the model, "
                              "so leave 'model' out.", param="model")
    body["model"] = name
    field = task_field(body, endpoint)
    try:
        if field == "messages":
            return await adapter.chat(request, body)
        if field == "prompt":
            return await adapter.completions(request, body, template_by_default=True)
        return await adapter.embeddings(request, body)
    except InvalidArgument as error:
        key = (error.param or "").split(".")[0].split("[")[0]
        if key in from_extra:
            error.param = f"extra_params.{error.param}"
            error.message = f"In 'extra_params': {error.message}"
        raise
