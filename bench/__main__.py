"""`python -m bench [NAME ...] [--home DIR] [--seconds S] [--rounds N]` (`make bench` runs them all)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

from bench import BENCHMARKS

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})")
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("INGOT_HOME", "~/.ingot")).expanduser(),
                        help="ingot home with the built models (env INGOT_HOME)")
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per path, case and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per case; medians are reported")
    config = parser.parse_args(argv)
    unknown = [name for name in config.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in config.names or BENCHMARKS:
        module = importlib.import_module(BENCHMARKS[name])
        print(f"== {name}", flush=True)
        result = module.run(config)
        target = RESULTS / f"{name}-{stamp}.json"
        target.write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
