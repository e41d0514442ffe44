"""GGUF imports, run as a child process: `python -m ingot.modelbuild.ggufimport ... --progress-json`.

The importer needs NumPy, gguf and onnx and works for seconds to minutes with the GIL mostly held; in a child
it neither stalls the registry's event loop nor leaves its memory in the registry. Cancelling the import (the
client went away) terminates the child, which removes its staging folder on the way out; the model is then
absent from the cache, as after any failed import.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ingot.common.errors import Internal, InvalidArgument, NotFound, PermissionDenied

log = logging.getLogger(__name__)

ACCURACIES = ("fp32", "int8")
PUBLISHER = "imported"
_STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class ImportStep:
    percent: float
    message: str


@dataclass(frozen=True)
class ImportDone:
    name: str
    path: Path
    already_imported: bool


def check_request(path: str, accuracy: str, allowed: Sequence[Path]) -> Path:
    """The GGUF's path, links and `..` resolved, after the checks that need no child process. `allowed` are
    the folders an operator lets imports read (already resolved)."""
    if accuracy and accuracy not in ACCURACIES:
        raise InvalidArgument(f"Invalid value for 'accuracy': {accuracy!r}; use one of {', '.join(ACCURACIES)}.",
                              param="accuracy")
    if not path:
        raise InvalidArgument("Missing required parameter: 'path' (a .gguf file on the server).", param="path")
    gguf = Path(path)
    if not gguf.is_absolute():
        raise InvalidArgument(f"'path' must be an absolute path on the server, not {path!r}.", param="path")
    real = gguf.resolve()
    # Checked before existence, so a caller learns nothing about files outside the allowed folders.
    if not any(real.is_relative_to(folder) for folder in allowed):
        raise PermissionDenied(f"Imports may not read {path}: the server allows imports only from "
                               f"{', '.join(str(f) for f in allowed)} (--import-dirs).", param="path",
                               code="import_path_not_allowed")
    gguf = real
    if not gguf.is_file():
        raise NotFound(f"There is no file {path} on the server.", param="path", code="file_not_found")
    return gguf


async def run_import(models_root: Path, gguf: Path, *, name: str, alias: str, accuracy: str,
                     force: bool) -> AsyncIterator[ImportStep | ImportDone]:
    command = [sys.executable, "-m", "ingot.modelbuild.ggufimport", str(gguf), "--home", str(models_root.parent),
               "--publisher", PUBLISHER, "--accuracy", accuracy or "fp32", "--progress-json"]
    if name:
        command += ["--name", name]
    if alias:
        command += ["--alias", alias]
    if force:
        command.append("--force")
    process = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.DEVNULL,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    finished = False
    try:
        assert process.stdout is not None
        async for raw in process.stdout:
            event = _event(raw)
            if event is None:
                continue
            if "progress" in event:
                yield ImportStep(percent=float(event["progress"]) * 100, message=str(event.get("message", "")))
            elif "done" in event:
                done = event["done"]
                finished = True
                yield ImportDone(name=done["name"], path=Path(done["path"]),
                                 already_imported=bool(done.get("alreadyImported")))
            elif "error" in event:
                finished = True
                raise _error(event["error"])
        code = await process.wait()
        if not finished:
            stderr = (await process.stderr.read()).decode(errors="replace") if process.stderr else ""
            log.error("GGUF import of %s exited with %s: %s", gguf, code, stderr[-2000:])
            raise Internal(f"The import of {gguf.name} failed unexpectedly (exit status {code}).")
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(_STOP_GRACE_S):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


def _event(raw: bytes) -> dict | None:
    try:
        event = json.loads(raw)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def _error(error: dict) -> Exception:
    message = str(error.get("message", "the import failed"))
    param = str(error.get("param") or "path")
    kind = error.get("kind")
    if kind == "not_found":
        return NotFound(message, param=param, code="file_not_found")
    if kind == "permission_denied":
        return PermissionDenied(message, param=param)
    return InvalidArgument(message, param=param, code="unsupported_model")
