"""What every model build starts with: the build's lock, the up-to-date check, and the staged folder that
becomes the model. The helpers live in `ingot.common.modelcache`, which the registry's downloads share;
`locked_build` puts them together once for the builders."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingot.common.modelcache import (MANIFEST_NAME, STAGING_DIR_NAME, STALE_AFTER_S, build_lock, built_manifest,
                                     purge_stale, read_manifest, scratch_dir, staged_model_dir, staging_root,
                                     write_manifest)

__all__ = ["MANIFEST_NAME", "STAGING_DIR_NAME", "STALE_AFTER_S", "Build", "build_lock", "built_manifest",
           "locked_build", "purge_stale", "read_manifest", "scratch_dir", "staged_model_dir", "staging_root",
           "write_manifest"]


@dataclass(frozen=True)
class Build:
    """One model's build, under its lock."""

    models_root: Path
    publisher: str
    folder: str
    # The installed model's manifest when it was built with this build's key (and not forced): nothing to do.
    up_to_date: dict[str, Any] | None

    @property
    def final(self) -> Path:
        return self.models_root / self.publisher / self.folder

    def staging(self):
        """The empty folder to build in; installed as `final` on a clean exit (see staged_model_dir)."""
        return staged_model_dir(self.models_root, self.publisher, self.folder)


@contextmanager
def locked_build(models_root: Path, publisher: str, folder: str, key: str, *, force: bool) -> Iterator[Build]:
    """Holds the build lock of `publisher/folder` (two processes build one model only once) and says whether
    the model there is already built with `key`."""
    models_root = Path(models_root)
    with build_lock(models_root, folder):
        final = models_root / publisher / folder
        yield Build(models_root, publisher, folder, None if force else built_manifest(final, key))
