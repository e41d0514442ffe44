from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ingot.common.settings import SettingsBase, home_field


class RegistrySettings(SettingsBase):
    listen: str = Field("127.0.0.1:50052", description="address to serve gRPC on (port 0 picks a free one)")
    home: Path = home_field()
    log_level: str = Field("info", description="logging level")

    @property
    def models_root(self) -> Path:
        return self.home.expanduser().absolute() / "models"
