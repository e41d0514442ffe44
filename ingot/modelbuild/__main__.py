"""`python -m ingot.modelbuild --home DIR [--force] [--variants NAME,...]`: build the default models into DIR/models.

Each model is one builder function `(models_root, *, force, log) -> Path`: DEFAULT_BUILDERS always run,
VARIANT_BUILDERS only when named in `--variants`; a builder returns early when its folder is already up to
date. Exits non-zero when any builder fails.
"""

from __future__ import annotations

import functools
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import Field

from ingot.common import settings
from ingot.modelbuild.minilm import build_minilm
from ingot.modelbuild.smollm2 import build_smollm2, build_smollm2_exact, build_smollm2_int8
from ingot.modelbuild.staging import purge_stale

Builder = Callable[..., Path]

DEFAULT_BUILDERS: list[tuple[str, Builder]] = [
    ("smollm2-135m-instruct", build_smollm2),
    # The same GGUF with fp32 activations (seconds to build): the exact path, for answers that never depend
    # on how a step was batched or cut (see services/inference/models.steps_agree).
    ("smollm2-135m-instruct-exact", build_smollm2_exact),
    ("all-minilm-l6-v2", build_minilm),
]
# Built on request: the int8 SmolLM2 that the builder re-quantises (the default before GGUF import; needs
# torch and about a minute).
VARIANT_BUILDERS: dict[str, Builder] = {
    "smollm2-135m-instruct-int8": build_smollm2_int8,
}


class BuildSettings(settings.SettingsBase):
    home: Path = settings.home_field()
    force: bool = Field(default=False, description="rebuild even when a model is up to date")
    variants: str = Field(default="", description="also build these variants, comma-separated: "
                                                  + ", ".join(VARIANT_BUILDERS))


def main(argv: Sequence[str] | None = None) -> int:
    config = settings.load(BuildSettings, argv, prog="python -m ingot.modelbuild",
                           description="Build ingot's default models into HOME/models.")
    log = functools.partial(print, flush=True)
    models_root = config.home.expanduser() / "models"
    models_root.mkdir(parents=True, exist_ok=True)
    for leftover in purge_stale(models_root):
        log(f"removed stale build leftover {leftover}")

    wanted = [v.strip() for v in config.variants.split(",") if v.strip()]
    unknown = [v for v in wanted if v not in VARIANT_BUILDERS]
    if unknown:
        log(f"unknown variants: {', '.join(unknown)} (known: {', '.join(VARIANT_BUILDERS)})")
        return 2
    failed = []
    for name, builder in DEFAULT_BUILDERS + [(v, VARIANT_BUILDERS[v]) for v in wanted]:
        started = time.monotonic()
        try:
            path = builder(models_root, force=config.force, log=log)
        except Exception:
            traceback.print_exc()
            log(f"{name}: FAILED after {time.monotonic() - started:.1f} s")
            failed.append(name)
            continue
        log(f"{name}: ready at {path}")
    if failed:
        log(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
