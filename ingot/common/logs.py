"""One logging setup for every process: level from settings, lines that name the process."""

from __future__ import annotations

import logging
import sys


def configure(process: str, level: str = "info") -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s {process} %(levelname)s %(name)s: %(message)s",
        force=True,
    )
