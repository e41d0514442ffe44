"""A real HTTP catalog host on 127.0.0.1 for download tests: a catalog and model files, with failure switches.

It serves the built default model's own files under other model names (so a download never clashes with
the built model), honours `Range`, records every file request, and can drop a connection after N bytes,
hold a response after N bytes until released, corrupt a file, answer 404 for one, or demand a token.
It runs its own event loop in a thread, so both async integration tests and sync end-to-end tests use it.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

CHUNK = 64 * 1024
_RANGE = re.compile(r"^bytes=(\d+)-$")
_sha_cache: dict[tuple[str, int, float], str] = {}

SMALL_FILES = ("genai_config.json", "tokenizer_config.json", "chat_template.jinja", "tokenizer.json", "model.onnx")
FULL_FILES = (*SMALL_FILES, "model.onnx.data")


def sha256_of(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime)
    if key not in _sha_cache:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(4 * 2**20):
                digest.update(block)
        _sha_cache[key] = digest.hexdigest()
    return _sha_cache[key]


@dataclass
class ServedModel:
    name: str  # "<id>:<version>"
    alias: str
    source: Path
    files: tuple[str, ...]
    publisher: str = "IngotTests"
    execution_provider: str = "CPUExecutionProvider"
    device_type: str = "CPU"
    # Leave `size` out of the catalog, as a catalog may.
    sizes: bool = True

    @property
    def folder(self) -> str:
        return self.name.replace(":", "-")

    def entry(self) -> dict:
        files = []
        for name in self.files:
            item = {"path": name, "url": f"files/{self.folder}/{name}", "sha256": sha256_of(self.source / name)}
            if self.sizes:
                item["size"] = (self.source / name).stat().st_size
            files.append(item)
        base, _, version = self.name.rpartition(":")
        return {
            "name": self.name, "displayName": f"{base} (test copy)", "providerType": "AzureFoundry",
            "uri": f"azureml://registries/ingot-tests/models/{base}/versions/{version}", "version": version,
            "modelType": "ONNX", "promptTemplate": {"assistant": "{Content}", "prompt": "{Content}"},
            "publisher": self.publisher, "task": "chat-completion",
            "runtime": {"deviceType": self.device_type, "executionProvider": self.execution_provider},
            "modelSettings": {"parameters": []}, "alias": self.alias, "supportsToolCalling": False,
            "license": "apache-2.0", "licenseDescription": "Apache 2.0", "parentModelUri": "",
            "maxOutputTokens": 256, "minFLVersion": "0.1.0", "files": files,
        }


@dataclass
class Served:
    """One file request as the server saw it."""

    model: str
    path: str
    range: str | None
    authorization: str | None
    status: int
    bytes_sent: int = 0


@dataclass
class CatalogServer:
    models: list[ServedModel]
    # (folder, path) → switch
    drop_after: dict[tuple[str, str], int] = field(default_factory=dict)
    hold_at: dict[tuple[str, str], int] = field(default_factory=dict)
    corrupt: set[tuple[str, str]] = field(default_factory=set)
    missing: set[tuple[str, str]] = field(default_factory=set)
    required_token: str | None = None
    requests: list[Served] = field(default_factory=list)
    catalog_fetches: int = 0
    catalog_available: bool = True
    port: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._release: dict[tuple[str, str], asyncio.Event] = {}
        self.holding = threading.Event()
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def catalog_url(self) -> str:
        return f"{self.base_url}/catalog.json"

    def start(self) -> CatalogServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        self.release_all()
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def release_all(self) -> None:
        for event in list(self._release.values()):
            self._loop.call_soon_threadsafe(event.set)

    def file_requests(self, folder: str, path: str) -> list[Served]:
        with self._lock:
            return [r for r in self.requests if (r.model, r.path) == (folder, path)]

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/catalog.json", self._catalog)
        app.router.add_get("/files/{model}/{path}", self._file)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _catalog(self, request: web.Request) -> web.Response:
        self.catalog_fetches += 1
        if not self.catalog_available:
            return web.Response(status=503, text="catalog down")
        entries = await asyncio.to_thread(lambda: [m.entry() for m in self.models])
        return web.json_response(entries)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        folder, path = request.match_info["model"], request.match_info["path"]
        key = (folder, path)
        record = Served(folder, path, request.headers.get("Range"), request.headers.get("Authorization"), 200)
        with self._lock:
            self.requests.append(record)
        model = next((m for m in self.models if m.folder == folder), None)
        if model is None or path not in model.files or key in self.missing:
            record.status = 404
            return web.Response(status=404, text="no such file")
        if self.required_token is not None and record.authorization != f"Bearer {self.required_token}":
            record.status = 401
            return web.Response(status=401, text="token required")
        data_path = model.source / path
        size = data_path.stat().st_size
        start = 0
        if record.range is not None:
            match = _RANGE.match(record.range)
            start = int(match.group(1)) if match else 0
            if start >= size:
                record.status = 416
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        response = web.StreamResponse(status=206 if start else 200)
        response.content_length = size - start
        if start:
            record.status = 206
            response.headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        await response.prepare(request)
        drop = self.drop_after.pop(key, None)
        hold = self.hold_at.pop(key, None)
        position = start
        with open(data_path, "rb") as f:
            f.seek(start)
            while block := f.read(CHUNK):
                block = self._maybe_corrupt(key, position, block, size)
                for limit in (drop, hold):
                    if limit is not None and position < limit < position + len(block):
                        block = block[:limit - position]
                await response.write(block)
                position += len(block)
                record.bytes_sent += len(block)
                if hold is not None and position == hold:
                    hold = None
                    release = self._release.setdefault(key, asyncio.Event())
                    self.holding.set()
                    await release.wait()
                    f.seek(position)
                if drop is not None and position == drop:
                    # Let the bytes reach the client, then hang up before the promised length.
                    await asyncio.sleep(0.3)
                    request.transport.close()
                    return response
        await response.write_eof()
        return response

    def _maybe_corrupt(self, key: tuple[str, str], position: int, block: bytes, size: int) -> bytes:
        target = size // 2
        if key in self.corrupt and position <= target < position + len(block):
            index = target - position
            block = block[:index] + bytes([block[index] ^ 0xFF]) + block[index + 1:]
        return block

    def release(self, folder: str, path: str) -> None:
        event = self._release.setdefault((folder, path), asyncio.Event())
        self._loop.call_soon_threadsafe(event.set)
