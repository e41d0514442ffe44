"""Generates the Python code for protos/ into the ingot package (`make protos`).

The generated modules are build output, not source: they are ignored by git and written by `make setup`.
`generate(out_dir)` is also what the staleness test calls, so the check and the build cannot disagree.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: Path = ROOT) -> list[Path]:
    """Writes *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for every proto under out_dir; returns the files."""
    well_known = resources.files("grpc_tools") / "_proto"
    files = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {files}")
    written = []
    for rel in files:
        package_dir = out_dir / Path(rel).parent
        # Every level below ingot/ becomes a regular package so imports never depend on namespace lookup.
        for level in [package_dir, *package_dir.parents]:
            if level == out_dir / "ingot" or level == out_dir or out_dir not in level.parents:
                break
            init = level / "__init__.py"
            if not init.exists():
                init.write_text("")
        stem = Path(rel).stem
        written += [package_dir / f"{stem}_pb2{suffix}" for suffix in (".py", ".pyi", "_grpc.py")]
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="where the ingot/ package tree is written")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path.relative_to(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
