from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ingot.common.settings import home_field
from ingot.common.grpcserver import ServiceSettings


# Logging, tracing, the metrics port, and how the server holds its port and ages connections come from
# the settings every service shares.
class RegistrySettings(ServiceSettings):
    listen: str = Field("127.0.0.1:50052", description="address to serve gRPC on (port 0 picks a free one)")
    home: Path = home_field()
    catalog_url: str = Field("", description="URL of the remote model catalog (a JSON array); empty: none")
    catalog_ttl: float = Field(3600.0, ge=0, description="seconds a fetched catalog is used before it is fetched again")
    execution_providers: str = Field(
        "cpu", description="execution providers this host runs, comma-separated (cpu, cuda, qnn, webgpu); an "
                           "alias resolves to the best variant among them")
    download_concurrency: int = Field(4, ge=1, le=64, description="files of one model downloaded at once")
    download_buffer_kb: int = Field(1024, ge=4, le=65536, description="size of one network read in KiB")
    download_queue_chunks: int = Field(8, ge=1, le=1024,
                                       description="reads buffered per file between the network and the disk")
    download_retries: int = Field(5, ge=0, le=100,
                                  description="times a dropped or failed file request is resumed before giving up")
    deployments: Path | None = Field(None, description="deployments file (YAML or JSON): names bound to a model "
                                     "and settings; re-read when it changes")
    download_read_timeout: float = Field(60.0, gt=0, description="seconds without a byte before a request is retried")
    # Imports read a path the caller names, so by default only a folder the operator fills on purpose.
    import_dirs: str = Field("", description="folders a GGUF import may read from, separated by ':' (as PATH); "
                             "empty: HOME/imports only")

    @property
    def import_roots(self) -> tuple[Path, ...]:
        """The allowed folders with links and `..` resolved, so a check against them sees the real place."""
        named = [part for part in self.import_dirs.split(":") if part.strip()]
        folders = [Path(part.strip()).expanduser() for part in named] or [self.home.expanduser() / "imports"]
        return tuple(folder.absolute().resolve() for folder in folders)

    @property
    def models_root(self) -> Path:
        return self.home.expanduser().absolute() / "models"

    @property
    def catalog_cache(self) -> Path:
        return self.home.expanduser().absolute() / "catalog.json"
