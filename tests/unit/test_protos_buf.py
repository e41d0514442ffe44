"""buf's own linter agrees that every contract under protos/ keeps the STANDARD style (protos/buf.yaml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ingot import protogen


def _buf() -> str:
    # buf-bin (the test extra) puts buf beside the interpreter; a buf on PATH does as well.
    beside = Path(sys.executable).parent / "buf"
    found = str(beside) if beside.exists() else shutil.which("buf")
    if found is None:
        pytest.skip("buf is not installed: `make setup` installs it (buf-bin, in the test extra)")
    return found


def test_buf_lint_passes_on_every_proto():
    done = subprocess.run([_buf(), "lint"], cwd=protogen.PROTO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_buf_lint_catches_a_value_without_its_enum_prefix(tmp_path):
    shutil.copytree(protogen.PROTO_ROOT, tmp_path / "protos")
    proto = tmp_path / "protos" / "ingot" / "api" / "v1" / "ingot_service.proto"
    proto.write_text(proto.read_text().replace("ROLE_TOOL = 5;", "TOOL = 5;"))
    done = subprocess.run([_buf(), "lint"], cwd=tmp_path / "protos", capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "TOOL" in done.stdout
