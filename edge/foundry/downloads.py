"""POST /openai/download: Foundry Local's download, streamed in the format its SDKs parse.

The body is a series of lines: `Total 45.67% Downloading model.onnx.data` while bytes arrive, then
`[DONE] All Completed!`, then one flat JSON object `{"success": true, "errorMessage": null}`. The SDKs read
it three ways, and the stream satisfies each: Python splits lines and takes the first line starting with
"{" as the result; JavaScript takes the first *chunk* starting with "{" (so the result is written on its
own, after a pause); C# takes everything after the last "{" (so the result holds no nested object, and no
brace in an error message).

A failure found before any progress (an unknown model, a bad body, a full disk: 507) answers with its real
status and a body both kinds of client read: the SDKs' flat `success`/`errorMessage` beside OpenAI's `error`.
A failure after the stream started can only end it: it ends with `{"success": false, "errorMessage": ...}`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from edge.mesh.backends import BACKENDS, translated_stream
from edge.mesh.messages import DownloadProgress
from edge.shared.errors import Failure, openai_body
from edge.openai.parsing import parse_json_object
from ingot.common.errors import IngotError, InvalidArgument

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

DONE_LINE = "[DONE] All Completed!\n"
# Long enough that a client reading chunk by chunk gets the final JSON as a chunk of its own.
RESULT_PAUSE_S = 0.05
HEADERS = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
PROVIDER_TYPES = {"azurefoundry", "azurefoundrylocal"}

# Keys compared case-insensitively: the SDKs disagree on case (Python sends "IgnorePipeReport").
_TOP = {"model": "model", "token": "token", "progresstoken": "progressToken", "customdirpath": "customDirPath",
        "buffersize": "bufferSize", "ignorepipereport": "ignorePipeReport"}
_MODEL = {"uri": "Uri", "name": "Name", "providertype": "ProviderType", "path": "Path",
          "prompttemplate": "PromptTemplate", "publisher": "Publisher"}


@dataclass(frozen=True)
class DownloadBody:
    name: str
    uri: str
    token: str
    custom_dir: str
    buffer_size_kb: int


def _fold(data: Mapping[str, Any], known: Mapping[str, str], where: str) -> dict[str, Any]:
    folded: dict[str, Any] = {}
    for key, value in data.items():
        canonical = known.get(key.lower())
        param = f"{where}{key}"
        if canonical is None:
            raise InvalidArgument(f"Unsupported parameter: '{param}' is not supported by this server.", param=param)
        if canonical in folded:
            raise InvalidArgument(f"'{param}' is given twice (keys differ only in case).", param=param)
        folded[canonical] = value
    return folded


def _string(data: Mapping[str, Any], key: str, param: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"Invalid type for '{param}': expected a string.", param=param)
    return value


def parse_download_body(body: bytes) -> DownloadBody:
    data = _fold(parse_json_object(body), _TOP, "")
    model = data.get("model")
    if isinstance(model, str):
        model = {"Name": model}
    if model is None:
        raise InvalidArgument("Missing required parameter: 'model'.", param="model")
    if not isinstance(model, dict):
        raise InvalidArgument("Invalid type for 'model': expected an object or a string.", param="model")
    model = _fold(model, _MODEL, "model.")
    name = _string(model, "Name", "model.Name").strip()
    uri = _string(model, "Uri", "model.Uri").strip()
    if not name and not uri:
        raise InvalidArgument("Missing required parameter: 'model.Name'.", param="model.Name")
    provider = _string(model, "ProviderType", "model.ProviderType")
    if provider and provider.lower() not in PROVIDER_TYPES:
        raise InvalidArgument(f"Invalid value for 'model.ProviderType': {provider!r} is not supported; this server "
                              "downloads from its catalog (AzureFoundry or AzureFoundryLocal).",
                              param="model.ProviderType")
    for key in ("Path", "Publisher"):
        _string(model, key, f"model.{key}")
    template = model.get("PromptTemplate")
    if template is not None and not isinstance(template, dict):
        raise InvalidArgument("Invalid type for 'model.PromptTemplate': expected an object.",
                              param="model.PromptTemplate")
    buffer_size = data.get("bufferSize")
    if buffer_size is not None and (isinstance(buffer_size, bool) or not isinstance(buffer_size, int)
                                    or not 0 <= buffer_size <= 65536):
        raise InvalidArgument("Invalid value for 'bufferSize': expected a whole number of KB from 0 to 65536.",
                              param="bufferSize")
    pipe = data.get("ignorePipeReport")
    if pipe is not None and not isinstance(pipe, bool):
        raise InvalidArgument("Invalid type for 'ignorePipeReport': expected a boolean.", param="ignorePipeReport")
    return DownloadBody(name=name, uri=uri, token=_string(data, "token", "token"),
                        custom_dir=_string(data, "customDirPath", "customDirPath"),
                        buffer_size_kb=buffer_size or 0)


def progress_line(progress: DownloadProgress) -> str:
    return f"Total {progress.percent:.2f}% Downloading {progress.file}\n"


def result_json(error: str | None = None, **success: str) -> str:
    """The flat object that ends the body; `success` adds fields to a successful one (the import's name)."""
    if error is not None:
        # The C# SDK parses from the last "{": a brace inside the message would cut the object in two.
        error = error.replace("{", "(").replace("}", ")")
        return json.dumps({"success": False, "errorMessage": error}) + "\n"
    return json.dumps({"success": True, "errorMessage": None, **success}) + "\n"


def early_failure(error: IngotError) -> web.Response:
    failure = Failure.from_error(error)
    if error.code == "insufficient_storage":
        # RESOURCE_EXHAUSTED is gRPC's code for a full disk, but to HTTP it would read as a rate limit (429).
        failure = dataclasses.replace(failure, status=507, type="server_error", retry_after=None)
    body = {"success": False, "errorMessage": failure.message, **openai_body(failure)}
    headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else None
    return web.json_response(body, status=failure.status, headers=headers)


@routes.post("/openai/download")
async def download(request: web.Request) -> web.StreamResponse:
    try:
        body = parse_download_body(await request.read())
    except IngotError as error:
        return early_failure(error)
    call = request.config_dict[BACKENDS].download_model(name=body.name, uri=body.uri, token=body.token,
                                                        custom_dir=body.custom_dir, buffer_size_kb=body.buffer_size_kb)
    # A download the client leaves stops in the registry and keeps what arrived for a later resume.
    return await relay_progress(request, call, what="download", subject=body.name or body.uri,
                                line=progress_line, success=lambda finished: {})


async def relay_progress(request: web.Request, call, *, what: str, subject: str,
                         line: Callable[[Any], str],
                         success: Callable[[Any], dict[str, str]]) -> web.StreamResponse:
    """Relays a registry stream of progress events ending in `finished` as Foundry Local's body: a `line`
    per progress event, [DONE], then the result object with `success(finished)`'s fields. A failure before
    the first event is a plain error response; one after it is the result object's errorMessage. Whatever
    ends it cancels the call, so a client that leaves stops the registry's work."""
    try:
        async with aclosing(translated_stream(call, "registry")) as events:
            try:
                first = await anext(events, None)
            except IngotError as error:
                return early_failure(error)
            return await _stream(request, first, events, what, subject, line, success)
    finally:
        if not call.done():
            call.cancel()


async def _stream(request: web.Request, first, rest: AsyncIterator[Any], what: str, subject: str,
                  line: Callable[[Any], str], success: Callable[[Any], dict[str, str]]) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers=HEADERS)
    await response.prepare(request)
    error: str | None = None
    finished = None
    try:
        event = first
        while event is not None:
            if event.HasField("progress"):
                await response.write(line(event.progress).encode())
            elif event.HasField("finished"):
                finished = event.finished
            event = await anext(rest, None)
        if finished is None:
            error = f"The registry ended the {what} without saying it finished."
    except IngotError as exc:
        log.warning("%s of %s failed: %s", what, subject, exc.message)
        error = exc.message
    except ConnectionResetError:
        raise
    except Exception:
        log.exception("%s of %s failed after it started", what, subject)
        error = Failure.unexpected().message
    if error is None:
        await response.write(DONE_LINE.encode())
    await asyncio.sleep(RESULT_PAUSE_S)
    await response.write(result_json(error, **(success(finished) if error is None else {})).encode())
    await response.write_eof()
    return response
