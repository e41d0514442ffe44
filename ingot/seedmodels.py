"""`ingot seed-models`: copy the models baked into the container image into the model cache, those it lacks.

Under Kubernetes the cache is a shared volume that starts empty, while the image carries the default models
in its own layer. The registry's init container runs this before the registry starts. Each model is copied
into staging and renamed into place under the same per-model lock as builds and downloads, so no reader sees
half a model; a model already in the cache is left alone, so a restart never rewrites files that a running
inference service has open.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from pydantic import Field

from ingot.common import modelcache, settings
from ingot.common.settings import home_field

log = logging.getLogger(__name__)


class SeedSettings(settings.SettingsBase):
    home: Path = home_field()
    baked_models: Path = Field(Path("/opt/ingot/models"), description="models shipped in the image: "
                               "<publisher>/<model folder>/ as in the cache")


def baked(source: Path) -> list[Path]:
    """The complete model folders under `source` (a folder without a manifest is never a model)."""
    if not source.is_dir():
        return []
    return sorted(folder for folder in source.glob("*/*")
                  if folder.is_dir() and modelcache.read_manifest(folder) is not None)


def seed(source: Path, models_root: Path) -> list[str]:
    """Installs every model of `source` that `models_root` lacks; returns the folders installed."""
    installed = []
    for folder in baked(source):
        publisher, name = folder.parent.name, folder.name
        with modelcache.build_lock(models_root, name):
            if modelcache.read_manifest(models_root / publisher / name) is not None:
                continue
            manifest = modelcache.read_manifest(folder)
            assert manifest is not None
            with modelcache.staged_model_dir(models_root, publisher, name) as staging:
                for entry in folder.iterdir():
                    if entry.name == modelcache.MANIFEST_NAME:
                        continue
                    if entry.is_dir():
                        shutil.copytree(entry, staging / entry.name)
                    else:
                        shutil.copy2(entry, staging / entry.name)
                modelcache.write_manifest(staging, manifest)
        installed.append(f"{publisher}/{name}")
    return installed


def main(argv: list[str] | None = None) -> int:
    config = settings.load(SeedSettings, argv, prog="ingot seed-models",
                           description="copy the models baked into the image into the model cache")
    logging.basicConfig(level="INFO", format="%(message)s")
    models_root = config.home.expanduser().absolute() / "models"
    installed = seed(config.baked_models, models_root)
    print(f"ingot seed-models: {len(installed)} installed ({', '.join(installed) or 'cache complete'})", flush=True)
    return 0
