"""Assemble a model folder off to the side and rename it into place only when it is complete.

Everything in progress lives in `models/.staging/` on the same filesystem as the models, so installing is a
`os.rename`. The manifest is written last (after every other file has been flushed to disk): a folder without
a manifest is never a model. Model builds (`ingot.modelbuild`) and the registry's downloads both assemble
models this way and take the same per-folder lock, so a build and a download of one model never interleave.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

MANIFEST_NAME = "inference_model.json"
STAGING_DIR_NAME = ".staging"
STALE_AFTER_S = 3600.0
_LOCK_SUFFIX = ".lock"


def staging_root(models_root: Path) -> Path:
    return Path(models_root) / STAGING_DIR_NAME


def read_manifest(model_dir: Path) -> dict[str, Any] | None:
    """The folder's manifest, or None when it has none (or an unreadable one)."""
    try:
        with open(Path(model_dir) / MANIFEST_NAME, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def built_manifest(model_dir: Path, build_key: str) -> dict[str, Any] | None:
    """The folder's manifest if the model in it was built with `build_key`: nothing needs building."""
    manifest = read_manifest(model_dir)
    return manifest if manifest is not None and manifest.get("BuildKey") == build_key else None


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    """Flush every file already in `folder` to disk, then write the manifest: the last file of a model."""
    folder = Path(folder)
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            fsync_path(path)
    target = folder / MANIFEST_NAME
    partial = folder / f".{MANIFEST_NAME}.partial"
    with open(partial, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, target)
    fsync_path(folder)
    return target


def model_folder_name(model_name: str) -> str:
    """The cache folder of a model: its full name with ":" → "-" ("Phi-4-generic-cpu:4" → "Phi-4-generic-cpu-4")."""
    return model_name.replace(":", "-")


def _lock_path(models_root: Path, folder_name: str) -> Path:
    check_name(folder_name)
    root = staging_root(models_root)
    root.mkdir(parents=True, exist_ok=True)
    return root / f"{folder_name}{_LOCK_SUFFIX}"


@contextmanager
def build_lock(models_root: Path, folder_name: str) -> Iterator[None]:
    """Serialise builds of one model across processes (two CLIs started at once build it only once)."""
    with open(_lock_path(models_root, folder_name), "a") as lock_file:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


@asynccontextmanager
async def model_lock(models_root: Path, folder_name: str, poll_s: float = 0.05) -> AsyncIterator[None]:
    """`build_lock` for an event loop: waits without blocking the loop, and a cancelled wait leaves at once.

    flock conflicts between separate opens even within one process, so this one lock serialises two
    downloads in one registry, two registries sharing a volume, and a build beside a download.
    """
    with open(_lock_path(models_root, folder_name), "a") as lock_file:
        while True:
            try:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(poll_s)
        try:
            yield
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


@contextmanager
def staged_model_dir(models_root: Path, publisher: str, folder_name: str) -> Iterator[Path]:
    """Yield an empty folder `models/.staging/<folder_name>.<random>`; install it on a clean exit.

    On a clean exit the folder must hold a manifest (see `write_manifest`); it then replaces
    `models/<publisher>/<folder_name>`. On an exception, or when the manifest is missing, it is deleted.
    """
    check_name(publisher)
    check_name(folder_name)
    models_root = Path(models_root)
    root = staging_root(models_root)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{folder_name}.", dir=root))
    try:
        staging.chmod(0o755)  # mkdtemp makes it 0700; services may run as another user
        yield staging
        if not (staging / MANIFEST_NAME).is_file():
            raise RuntimeError(f"{staging} has no {MANIFEST_NAME}; refusing to install it as a model")
        install(staging, models_root / publisher / folder_name, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def scratch_dir(models_root: Path, label: str) -> Iterator[Path]:
    """A scratch folder under `.staging` (same disk as the models, purged if a crash leaves it); always deleted."""
    check_name(label)
    root = staging_root(models_root)
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{label}.work.", dir=root))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def purge_stale(models_root: Path, max_age_s: float = STALE_AFTER_S, *, now: float | None = None) -> list[Path]:
    """Delete what crashed builds left in `.staging`: entries with nothing modified for `max_age_s`."""
    root = staging_root(models_root)
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
    for entry in sorted(root.iterdir()):
        if entry.name.endswith(_LOCK_SUFFIX):
            continue  # deleting a lock file another process holds would let a third one in
        try:
            if now - _newest_mtime(entry) < max_age_s:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:
            continue
        removed.append(entry)
    return removed


def install(staging: Path, final: Path, root: Path) -> None:
    """Rename `staging` to `final` in one step; a `final` already there is first moved aside into `root`."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if final.exists() or final.is_symlink():
        old = root / f"{final.name}.old.{secrets.token_hex(4)}"
        os.rename(final, old)
    try:
        os.rename(staging, final)
    except BaseException:
        if old is not None:
            os.rename(old, final)
        raise
    fsync_path(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def discard(folder: Path, models_root: Path) -> None:
    """Take a model out of the cache: one rename out of sight (listings stop showing it at once), then delete."""
    root = staging_root(models_root)
    root.mkdir(parents=True, exist_ok=True)
    gone = root / f"{folder.name}.deleted.{secrets.token_hex(4)}"
    os.rename(folder, gone)
    fsync_path(folder.parent)
    shutil.rmtree(gone, ignore_errors=True)


def _newest_mtime(entry: Path) -> float:
    # A build in progress keeps writing inside its folder, so the folder's own mtime alone would look stale.
    newest = entry.lstat().st_mtime
    if entry.is_dir() and not entry.is_symlink():
        for dirpath, dirnames, filenames in os.walk(entry):
            for name in dirnames + filenames:
                try:
                    newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
                except FileNotFoundError:
                    pass
    return newest


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_name(name: str) -> None:
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"not a valid model folder name: {name!r}")
