"""One file over HTTP into a model's partial folder: resumed with `Range`, checked against its sha256.

Bytes go to `<path>.part` and the file takes its real name only once its checksum matched, so a file
under its real name in a partial folder is complete. The network and the disk overlap: the response is
read into a bounded queue that a writer drains in a worker thread (hashing on the way), so a slow disk
holds at most `queue_chunks` reads in memory and the event loop never waits on a write.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import aiohttp

from ingot.common import metrics
from ingot.common.errors import DataLoss, IngotError, NotFound, PermissionDenied, ResourceExhausted, Unavailable

log = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_HASH_BLOCK = 4 * 2**20
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def no_space(model: str, where: Path, exc: OSError) -> ResourceExhausted:
    return ResourceExhausted(f"The disk is full: no space left on device while downloading {model} into {where} "
                             f"({exc.strerror or exc}). Free some space and download it again.",
                             code="insufficient_storage")


@dataclass
class FileJob:
    """One catalog file of a download and how much of it is on disk."""

    path: str
    url: str
    size: int | None
    sha256: str
    dest: Path
    done: int = 0
    # The size the server announced when the catalog gave none, so progress still has a total.
    learned_size: int | None = None
    # The sha256 of the bytes in the part file so far.
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)

    def restart(self) -> None:
        self.part.unlink(missing_ok=True)
        self.done = 0
        self.digest = hashlib.sha256()

    @property
    def part(self) -> Path:
        return self.dest.with_name(self.dest.name + ".part")

    @property
    def expected(self) -> int | None:
        return self.size if self.size is not None else self.learned_size


@dataclass(frozen=True)
class FetchOptions:
    chunk_bytes: int
    queue_chunks: int
    retries: int
    read_timeout: float
    first_backoff: float = 0.2
    max_backoff: float = 5.0


class _Retry(Exception):
    """A failure worth resuming after (a dropped connection, a 5xx, a stall)."""


def _hash_file(path: Path, limit: int | None = None) -> hashlib._Hash:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        remaining = limit
        while remaining is None or remaining > 0:
            block = f.read(_HASH_BLOCK if remaining is None else min(_HASH_BLOCK, remaining))
            if not block:
                break
            digest.update(block)
            if remaining is not None:
                remaining -= len(block)
    return digest


class _Sink:
    """Drains the queue into the file in a worker thread; a write error is kept and reported to the reader."""

    def __init__(self, file: BinaryIO, job: FileJob, on_bytes: Callable[[], None], depth: int) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=depth)
        self.error: OSError | None = None
        self._file, self._job, self._on_bytes = file, job, on_bytes

    def _write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._job.digest.update(chunk)

    async def run(self) -> None:
        # Keeps draining after an error so the reader's put() never blocks for ever.
        while (chunk := await self.queue.get()) is not None:
            if self.error is not None:
                continue
            try:
                await asyncio.to_thread(self._write, chunk)
            except OSError as exc:
                self.error = exc
                continue
            self._job.done += len(chunk)
            self._on_bytes()


async def fetch_file(session: aiohttp.ClientSession, job: FileJob, *, model: str, headers: Mapping[str, str],
                     options: FetchOptions, on_bytes: Callable[[], None]) -> None:
    """Brings `job.dest` to its complete, verified state, resuming whatever `job.part` already holds."""
    if job.dest.exists():
        # Complete and verified by an earlier attempt; checked again because the catalog may have changed.
        if job.size in (None, job.dest.stat().st_size) and (
                (await asyncio.to_thread(_hash_file, job.dest)).hexdigest() == job.sha256):
            job.done = job.dest.stat().st_size
            on_bytes()
            return
        job.dest.unlink()
    job.dest.parent.mkdir(parents=True, exist_ok=True)
    job.done = job.part.stat().st_size if job.part.exists() else 0
    if job.size is not None and job.done > job.size:
        job.restart()
    if job.done:
        job.digest = await asyncio.to_thread(_hash_file, job.part, job.done)
    on_bytes()
    failures = 0
    backoff = options.first_backoff
    while True:
        try:
            if job.expected is not None and job.done >= job.expected:
                break
            await _request(session, job, model=model, headers=headers, options=options, on_bytes=on_bytes)
            if job.expected is None or job.done >= job.expected:
                break
            raise _Retry(f"the connection closed after {job.done} of {job.expected} bytes")
        except (_Retry, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            failures += 1
            reason = str(exc) or type(exc).__name__
            if failures > options.retries:
                raise Unavailable(f"Downloading {job.path} of {model} from {job.url} failed {failures} times; last: "
                                  f"{reason}. What arrived is kept: download it again to resume.") from None
            log.warning("%s: %s failed at byte %d (%s); resuming in %.1f s", model, job.path, job.done, reason, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, options.max_backoff)
    actual = job.digest.hexdigest()
    if actual != job.sha256:
        job.restart()
        on_bytes()
        raise DataLoss(f"Checksum mismatch for {job.path} of {model}: the catalog says sha256 {job.sha256}, the "
                       f"downloaded file has {actual}. The file was discarded.", code="checksum_mismatch")
    await asyncio.to_thread(_finish, job.part, job.dest)


def _finish(part: Path, dest: Path) -> None:
    with open(part, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(part, dest)


async def _request(session: aiohttp.ClientSession, job: FileJob, *, model: str, headers: Mapping[str, str],
                   options: FetchOptions, on_bytes: Callable[[], None]) -> None:
    """One GET from `job.done` on, appending to the part file."""
    request_headers = dict(headers)
    if job.done:
        request_headers["Range"] = f"bytes={job.done}-"
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=options.read_timeout, sock_read=options.read_timeout)
    async with session.get(job.url, headers=request_headers, timeout=timeout) as response:
        if response.status == 416 and job.done:
            return _unsatisfiable(response, job)
        _check_status(response, job, model)
        if job.done and response.status == 200:
            # The server ignored Range and sends the whole file: start the part file over.
            log.info("%s: %s: the server does not resume; downloading it from the start", model, job.path)
            job.restart()
        elif response.status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != job.done:
                raise _Retry(f"the server answered Range {job.done}- with {response.headers.get('Content-Range')!r}")
        if job.size is None and response.content_length is not None:
            job.learned_size = job.done + response.content_length
        with open(job.part, "ab") as file:
            sink = _Sink(file, job, on_bytes, options.queue_chunks)
            writer = asyncio.create_task(sink.run())
            received = job.done
            try:
                async for chunk in response.content.iter_chunked(options.chunk_bytes):
                    received += len(chunk)
                    metrics.DOWNLOAD_BYTES.labels(model).inc(len(chunk))
                    if job.size is not None and received > job.size:
                        raise DataLoss(f"The server sent more than the {job.size} bytes the catalog gives for "
                                       f"{job.path} of {model}.")
                    await sink.queue.put(chunk)
                    if sink.error is not None:
                        break
            finally:
                await sink.queue.put(None)
                await writer
            if sink.error is not None:
                if sink.error.errno in NO_SPACE:
                    raise no_space(model, job.part.parent, sink.error)
                raise sink.error


def _unsatisfiable(response: aiohttp.ClientResponse, job: FileJob) -> None:
    """A 416 to our Range: the part file may already be whole (a restart between the last byte and the rename)."""
    match = re.match(r"^bytes \*/(\d+)$", response.headers.get("Content-Range", ""))
    if match is not None and int(match.group(1)) == job.done:
        job.learned_size = job.done
        return
    offset = job.done
    job.restart()
    raise _Retry(f"the server cannot resume {job.path} at byte {offset} (HTTP 416); starting over")


def _check_status(response: aiohttp.ClientResponse, job: FileJob, model: str) -> None:
    status = response.status
    if status in (200, 206):
        return
    where = f"{job.path} of {model} ({job.url})"
    if status == 404:
        raise NotFound(f"The catalog host has no file {where}: HTTP 404.", param="model", code="file_not_found")
    if status in (401, 403):
        # 403 rather than 401 to our caller: it is the catalog host that refused, not ingot's own auth.
        raise PermissionDenied(f"The catalog host refused {where}: HTTP {status}. Pass a valid `token`.",
                               code="catalog_forbidden")
    if status >= 500 or status == 429:
        raise _Retry(f"HTTP {status} {response.reason}")
    raise IngotError(f"The catalog host answered {where} with HTTP {status} {response.reason}.")
