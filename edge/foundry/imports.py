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

from dataclasses import dataclass

from aiohttp import web

from edge.mesh.backends import BACKENDS
from edge.foundry.downloads import early_failure, relay_progress
from edge.openai.parsing import parse_json_object
from ingot.common.errors import IngotError, InvalidArgument

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
    call = request.config_dict[BACKENDS].import_model(path=body.path, name=body.name, alias=body.alias,
                                                      accuracy=body.accuracy, force=body.force)
    # An import the client leaves stops in the registry and leaves nothing behind.
    return await relay_progress(
        request, call, what="import", subject=body.path,
        line=lambda progress: f"Total {progress.percent:.2f}% Importing {progress.message}\n",
        success=lambda finished: {"name": finished.name, "path": finished.path})
