from __future__ import annotations

from pydantic import Field

from ingot.common.settings import SettingsBase


class TokenizerSettings(SettingsBase):
    listen: str = Field("127.0.0.1:50051", description="address to serve gRPC on (port 0 picks a free one)")
    registry_address: str = Field("127.0.0.1:50052", description="the registry service, to resolve model names")
    log_level: str = Field("info", description="logging level")
