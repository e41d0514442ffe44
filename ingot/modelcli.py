"""`ingot model list | download NAME | import FILE.gguf | load NAME | unload NAME | rm NAME`, over HTTP.

They talk to a running edge (`--endpoint`, `INGOT_ENDPOINT`) through the same Foundry Local routes the SDKs
use, so what the command line shows is what any client sees. Downloads and imports draw a progress bar from
the streamed `Total NN.NN% Downloading FILE` / `Total NN.NN% Importing STEP` lines. An import names a file
the server reads from its own disk (`python -m ingot.modelbuild.ggufimport` imports without a server).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from ingot.common import settings
from ingot.edgeclient import ClientSettings, CommandError, open_endpoint, request_json

_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%")
_FILE = re.compile(r"Downloading (.+)$")
_STEP = re.compile(r"Importing (.+)$")


def _model_path(name: str) -> str:
    return urllib.parse.quote(name, safe=":")


def list_models(endpoint: str) -> int:
    catalog = request_json(endpoint, "GET", "/foundry/list")
    cached = set(request_json(endpoint, "GET", "/openai/models") or [])
    try:
        loaded = set(request_json(endpoint, "GET", "/openai/loadedmodels") or [])
    except CommandError:
        loaded = set()
    rows = [("ALIAS", "NAME", "DEVICE", "SIZE", "STATUS")]
    for entry in catalog:
        name = entry["name"]
        state = "loaded" if name in loaded else "cached" if name in cached else "-"
        device = f"{entry['runtime']['deviceType']} ({entry['runtime']['executionProvider'].removesuffix('ExecutionProvider')})"
        rows.append((entry["alias"] or "-", name, device, f"{entry['fileSizeMb']} MB", state))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _follow(response, desc: str, detail: re.Pattern[str]) -> dict[str, Any]:
    """Draw the streamed `Total NN.NN% ...` lines as a progress bar; the final flat JSON object."""
    with tqdm(total=100.0, desc=desc, unit="%", bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}",
              file=sys.stderr) as bar:
        final = ""
        for raw in response:
            line = raw.decode("utf-8", errors="replace").strip()
            if final or line.startswith("{"):
                final += line
                continue
            if (match := _PERCENT.search(line)) is not None:
                bar.update(max(0.0, min(float(match.group(1)), 100.0) - bar.n))
                if (text := detail.search(line)) is not None:
                    bar.set_postfix_str(text.group(1), refresh=False)
        try:
            result = json.loads(final)
        except ValueError:
            raise CommandError("the server ended the stream without a result") from None
        if result.get("success"):
            bar.update(100.0 - bar.n)
    return result


def download(endpoint: str, name: str, *, token: str | None, custom_dir: str | None) -> int:
    body: dict[str, Any] = {"model": {"Name": name}, "ignorePipeReport": True}
    if token:
        body["token"] = token
    if custom_dir:
        body["customDirPath"] = os.path.abspath(custom_dir)
    with open_endpoint(endpoint, "POST", "/openai/download", body=body) as response:
        result = _follow(response, name, _FILE)
    if not result.get("success"):
        raise CommandError(f"downloading {name} failed: {result.get('errorMessage') or 'no reason given'}")
    print(f"{name} is downloaded.")
    return 0


def import_gguf(endpoint: str, path: str, *, name: str | None, alias: str | None, accuracy: str | None,
                force: bool) -> int:
    """Import a GGUF file; the path is sent as an absolute path, which the server reads from its own disk."""
    body: dict[str, Any] = {"path": os.path.abspath(path), "force": force}
    body.update({k: v for k, v in (("name", name), ("alias", alias), ("accuracy", accuracy)) if v})
    with open_endpoint(endpoint, "POST", "/openai/import", body=body) as response:
        result = _follow(response, os.path.basename(path), _STEP)
    if not result.get("success"):
        raise CommandError(f"importing {path} failed: {result.get('errorMessage') or 'no reason given'}")
    print(f"{result.get('name')} is imported ({result.get('path')}).")
    return 0


def load(endpoint: str, name: str, *, ttl: int | None, ep: str | None) -> int:
    request_json(endpoint, "GET", f"/openai/load/{_model_path(name)}", query={"ttl": ttl, "ep": ep})
    print(f"{name} is loaded.")
    return 0


def unload(endpoint: str, name: str, *, force: bool) -> int:
    request_json(endpoint, "GET", f"/openai/unload/{_model_path(name)}", query={"force": str(force).lower()})
    print(f"{name} is unloaded.")
    return 0


def remove(endpoint: str, name: str, *, force: bool) -> int:
    reply = request_json(endpoint, "DELETE", f"/openai/models/{_model_path(name)}", query={"force": str(force).lower()})
    print(f"{reply.get('id', name) if isinstance(reply, dict) else name} is removed from the cache.")
    return 0


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    settings.add_arguments(common, ClientSettings)
    top = argparse.ArgumentParser(prog="ingot model", description="Manage the models of a running ingot.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("list", parents=[common], help="the catalog, with what is cached and loaded")
    get = commands.add_parser("download", parents=[common], help="download a model into the cache")
    get.add_argument("name", help="full name or alias")
    get.add_argument("--token", help="sent to the catalog host as Authorization")
    get.add_argument("--custom-dir", help="download into this folder instead of the cache")
    up = commands.add_parser("load", parents=[common], help="load a cached model into memory")
    up.add_argument("name")
    up.add_argument("--ttl", type=int, help="seconds the model stays loaded while idle")
    up.add_argument("--ep", help="execution provider (cpu, cuda, ...)")
    down = commands.add_parser("unload", parents=[common], help="unload a model from memory")
    down.add_argument("name")
    down.add_argument("--force", action="store_true", help="even before its TTL ends")
    imp = commands.add_parser("import", parents=[common],
                              help="import a GGUF file (llama.cpp / Ollama) into the cache; the server reads it "
                                   "from its own disk")
    imp.add_argument("path", help="the .gguf file")
    imp.add_argument("--name", help="full name to give it (default: <file stem>-generic-cpu:1)")
    imp.add_argument("--alias", help="a short name requests may use instead")
    imp.add_argument("--accuracy", choices=("fp32", "int8"),
                     help="fp32 (default): the GGUF's own fp32 results; int8: llama.cpp's arithmetic, faster")
    imp.add_argument("--force", action="store_true", help="import again even when already imported")
    rm = commands.add_parser("rm", parents=[common], help="remove a model from the cache")
    rm.add_argument("name")
    rm.add_argument("--force", action="store_true", help="unload it first if it is loaded")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    endpoint = settings.from_namespace(ClientSettings, args, os.environ).endpoint
    try:
        if args.command == "list":
            return list_models(endpoint)
        if args.command == "download":
            return download(endpoint, args.name, token=args.token, custom_dir=args.custom_dir)
        if args.command == "load":
            return load(endpoint, args.name, ttl=args.ttl, ep=args.ep)
        if args.command == "unload":
            return unload(endpoint, args.name, force=args.force)
        if args.command == "import":
            return import_gguf(endpoint, args.path, name=args.name, alias=args.alias, accuracy=args.accuracy,
                               force=args.force)
        return remove(endpoint, args.name, force=args.force)
    except CommandError as exc:
        print(f"ingot model {args.command}: {exc}", file=sys.stderr)
        return 1
