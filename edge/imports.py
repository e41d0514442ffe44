"""POST /openai/import: bring your own GGUF, streamed like Foundry Local's download.

Body: `{"path": "/abs/file.gguf", "name": "My-Model:1", "alias": "my-model", "accuracy": "fp32", "force": false}`
(only `path` is required; it names a file on the server's disk, which the registry reads). The answer is a
series of lines, `Total 42.00% Importing converting layer 3/30`, then `[DONE] All Completed!`, then one flat
JSON object `{"success": true, "errorMessage": null, "name": ..., "path": ...}`, so `ingot model import` and
a download share one parser. A failure before the import started answers with its real status (404 for a
missing file, 400 for a file the importer cannot read, naming what); a later one ends the stream with
`{"success": false, "errorMessage": ...}`.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
from dataclasses import dataclass

from aiohttp import web

from edge.backends import BACKENDS, translated_stream
from edge.downloads import DONE_LINE, HEADERS, RESULT_PAUSE_S, early_failure, result_json
from edge.errors import Failure
from edge.parsing import parse_json_object
from ingot.common.errors import IngotError, InvalidArgument
from ingot.registry.v1 import registry_service_pb2 as registry_pb2

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

_STRINGS = ("path", "name", "alias", "accuracy")


@dataclass(frozen=True)
class ImportBody:
    path: str
    name: str
    alias: str
    accuracy: str
    force: bool


def parse_import_body(body: bytes) -> ImportBody:
    data = parse_json_object(body)
    for key in data:
        if key not in (*_STRINGS, "force"):
            raise InvalidArgument(f"Unsupported parameter: '{key}' is not supported by this server.", param=key)
    for key in _STRINGS:
        if data.get(key) is not None and not isinstance(data[key], str):
            raise InvalidArgument(f"Invalid type for '{key}': expected a string.", param=key)
    force = data.get("force", False)
    if not isinstance(force, bool):
        raise InvalidArgument("Invalid type for 'force': expected a boolean.", param="force")
    if not (data.get("path") or "").strip():
        raise InvalidArgument("Missing required parameter: 'path' (a .gguf file on the server).", param="path")
    return ImportBody(path=data["path"].strip(), name=(data.get("name") or "").strip(),
                      alias=(data.get("alias") or "").strip(), accuracy=(data.get("accuracy") or "").strip(),
                      force=force)


@routes.post("/openai/import")
async def import_model(request: web.Request) -> web.StreamResponse:
    try:
        body = parse_import_body(await request.read())
    except IngotError as error:
        return early_failure(error)
    call = request.config_dict[BACKENDS].registry.ImportModel(registry_pb2.ImportModelRequest(
        path=body.path, name=body.name, alias=body.alias, accuracy=body.accuracy, force=body.force))
    try:
        async with aclosing(translated_stream(call, "registry")) as events:
            try:
                first = await anext(events, None)
            except IngotError as error:
                return early_failure(error)
            return await _stream(request, first, events, body.path)
    finally:
        if not call.done():
            call.cancel()  # the client went away: the registry stops the import and leaves nothing behind


async def _stream(request: web.Request, first, rest, source: str) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers=HEADERS)
    await response.prepare(request)
    error: str | None = None
    finished = None
    try:
        event = first
        while event is not None:
            if event.HasField("progress"):
                line = f"Total {event.progress.percent:.2f}% Importing {event.progress.message}\n"
                await response.write(line.encode())
            elif event.HasField("finished"):
                finished = event.finished
            event = await anext(rest, None)
        if finished is None:
            error = "The registry ended the import without saying it finished."
    except IngotError as exc:
        log.warning("import of %s failed: %s", source, exc.message)
        error = exc.message
    except ConnectionResetError:
        raise
    except Exception:
        log.exception("import of %s failed after it started", source)
        error = Failure.unexpected().message
    if error is None:
        await response.write(DONE_LINE.encode())
    await asyncio.sleep(RESULT_PAUSE_S)
    await response.write(result_json(error=error, name=finished.name if finished else "",
                                     path=finished.path if finished else "").encode())
    await response.write_eof()
    return response
