"""A catalog model into the cache: never half-installed, resumable, one download of a model at a time.

Files gather in `<root>/.staging/<folder>.partial/`, which outlives the process, so a download that was
cut off (a dropped connection, a killed registry, a client that went away) resumes from the bytes already
there. Once every file matched its sha256 the registry writes the manifest, last, and renames the folder
to `<root>/<publisher>/<folder>` in one step. The per-model lock of `ingot.common.modelcache` keeps two
downloads (or a download and a build) of one model from interleaving: the second waits, then finds the
model cached.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from ingot.common.errors import FailedPrecondition, Internal, ResourceExhausted
from ingot.common.modelcache import (install, model_folder_name, model_lock, read_manifest,
                                     staging_root, write_manifest)
from services.registry.catalog import Entry, file_destination, same_origin
from services.registry.fetch import NO_SPACE, FetchOptions, FileJob, fetch_file, no_space

log = logging.getLogger(__name__)

# What the partial folder was started for; a catalog that changed since makes it start over.
STATE_NAME = ".download.json"
PROGRESS_INTERVAL_S = 0.1


@dataclass(frozen=True)
class Progress:
    file: str
    done: int
    total: int

    @property
    def percent(self) -> float:
        return min(100.0, 100.0 * self.done / self.total) if self.total else 0.0


@dataclass(frozen=True)
class Finished:
    name: str
    path: Path
    already_cached: bool


def installed(final: Path, name: str) -> bool:
    manifest = read_manifest(final)
    return manifest is not None and str(manifest.get("Name", "")).casefold() == name.casefold()


def authorization(token: str) -> str:
    # A bare token is a bearer token (Hugging Face's and GitHub's kind); one with a scheme passes as it is.
    return token if " " in token.strip() else f"Bearer {token.strip()}"


def _human(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


class Downloader:
    def __init__(self, *, catalog_url: str, concurrency: int, options: FetchOptions) -> None:
        self.catalog_url = catalog_url
        self.concurrency = concurrency
        self.options = options

    async def download(self, entry: Entry, root: Path, *, token: str = "",
                       chunk_bytes: int | None = None) -> AsyncIterator[Progress | Finished]:
        """Progress while files arrive, then Finished. Raises IngotErrors; the model is then not in `root`."""
        folder = model_folder_name(entry.name)
        final = root / entry.publisher / folder
        if installed(final, entry.name):
            yield Finished(entry.name, final, already_cached=True)
            return
        if not entry.downloadable:
            raise FailedPrecondition(f"The model '{entry.name}' is not in the remote catalog, so there is nothing "
                                     f"to download it from.", param="model")
        partial = staging_root(root) / f"{folder}.partial"
        jobs = [FileJob(f.path, f.url, f.size, f.sha256, file_destination(partial, f.path)) for f in entry.files]
        self._check_target(final, entry)
        self._check_space(entry, root, jobs)
        # Sent before waiting for the lock, so the caller can start answering while another download runs.
        yield Progress(entry.files[0].path, 0, sum(f.size or 0 for f in entry.files))
        async with model_lock(root, folder):
            if installed(final, entry.name):
                log.info("%s: already in %s (downloaded while this request waited)", entry.name, root)
                yield Finished(entry.name, final, already_cached=True)
                return
            self._check_target(final, entry)
            try:
                await asyncio.to_thread(_prepare_partial, partial, entry)
                self._check_space(entry, root, jobs)
                async for progress in self._fetch_all(entry, jobs, token, chunk_bytes):
                    yield progress
                await asyncio.to_thread(_install, partial, final, entry, root, self.catalog_url)
            except OSError as exc:
                if exc.errno in NO_SPACE:
                    await asyncio.to_thread(shutil.rmtree, partial, True)
                    raise no_space(entry.name, root, exc) from None
                raise Internal(f"Could not write {entry.name} into {root}: {exc}") from None
            except ResourceExhausted:
                # A full disk: what was written is of no use until space is freed, and only takes more of it.
                await asyncio.to_thread(shutil.rmtree, partial, True)
                raise
        log.info("%s: downloaded into %s", entry.name, final)
        yield Finished(entry.name, final, already_cached=False)

    def _check_target(self, final: Path, entry: Entry) -> None:
        if final.exists() and not installed(final, entry.name):
            raise FailedPrecondition(f"{final} exists and does not hold {entry.name}; remove it before downloading.",
                                     param="model")

    def _check_space(self, entry: Entry, root: Path, jobs: list[FileJob]) -> None:
        needed = 0
        for job in jobs:
            if job.size is None or job.dest.exists():
                continue
            have = job.part.stat().st_size if job.part.exists() else 0
            needed += max(0, job.size - have)
        probe = root
        while not probe.exists():
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        if needed > free:
            raise ResourceExhausted(f"Not enough disk space to download {entry.name}: it needs {_human(needed)} "
                                    f"more and {_human(free)} is free in {root}.", code="insufficient_storage")

    async def _fetch_all(self, entry: Entry, jobs: list[FileJob], token: str,
                         chunk_bytes: int | None) -> AsyncIterator[Progress]:
        changed = asyncio.Event()
        latest = [jobs[0].path]
        options = self.options
        if chunk_bytes:
            options = FetchOptions(chunk_bytes, options.queue_chunks, options.retries, options.read_timeout,
                                   options.first_backoff, options.max_backoff)
        limit = asyncio.Semaphore(self.concurrency)

        def progress() -> Progress:
            total = sum(job.expected or 0 for job in jobs)
            return Progress(latest[0], sum(job.done for job in jobs), total)

        async def one(session: aiohttp.ClientSession, job: FileJob) -> None:
            headers = {}
            if token and self.catalog_url and same_origin(job.url, self.catalog_url):
                headers["Authorization"] = authorization(token)

            def on_bytes() -> None:
                latest[0] = job.path
                changed.set()

            async with limit:
                await fetch_file(session, job, model=entry.name, headers=headers, options=options,
                                 on_bytes=on_bytes)

        started = time.monotonic()
        async with aiohttp.ClientSession() as session:
            tasks = [asyncio.create_task(one(session, job)) for job in jobs]
            everything = asyncio.gather(*tasks)
            try:
                while not everything.done():
                    waiter = asyncio.create_task(changed.wait())
                    await asyncio.wait({waiter, everything}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    if changed.is_set() and not everything.done():
                        changed.clear()
                        yield progress()
                        await asyncio.sleep(PROGRESS_INTERVAL_S)
                await everything
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        final = progress()
        log.info("%s: %s in %.1f s", entry.name, _human(final.done), time.monotonic() - started)
        yield Progress(final.file, final.total, final.total)


def _prepare_partial(partial: Path, entry: Entry) -> None:
    state = {"name": entry.name, "files": [[f.path, f.size, f.sha256] for f in entry.files]}
    state_file = partial / STATE_NAME
    try:
        previous = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = None
    if previous != state and partial.exists():
        # Left by a download of another catalog version: its bytes cannot be trusted for this one.
        log.info("%s: discarding a partial download made for a different catalog entry", entry.name)
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(state), encoding="utf-8")


def _install(partial: Path, final: Path, entry: Entry, root: Path, source: str) -> None:
    (partial / STATE_NAME).unlink(missing_ok=True)
    write_manifest(partial, {**entry.manifest(), "Source": source})
    install(partial, final, staging_root(root))
