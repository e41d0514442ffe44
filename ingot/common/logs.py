"""One logging setup for every process: JSON lines that name the process and carry the request id."""

from __future__ import annotations

from ingot.common.telemetry import configure_logs


def configure(process: str, level: str = "info") -> None:
    configure_logs(process, level)
