"""Flags and INGOT_ environment variables into one validated settings object per process.

Each process declares a pydantic model; every field becomes a flag (`max_queue` → `--max-queue`) and an
environment variable (`INGOT_MAX_QUEUE`). A flag beats the variable, which beats the default. This is the
only place that reads the environment: everything deeper receives the settings object.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV_PREFIX = "INGOT_"

S = TypeVar("S", bound=BaseModel)


class SettingsBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def default_home() -> Path:
    return Path("~/.ingot").expanduser()


def home_field() -> Path:
    return Field(default_factory=default_home, description="ingot's home; the model cache is HOME/models")


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    for name, info in model.model_fields.items():
        default = "" if info.is_required() else f", default {info.get_default(call_default_factory=True)}"
        help_text = f"{info.description or name} (env {env_name(name)}{default})"
        if info.annotation is bool:
            parser.add_argument(flag_name(name), dest=name, default=None,
                                action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(flag_name(name), dest=name, default=None, help=help_text)


def from_namespace(model: type[S], args: argparse.Namespace, environ: Mapping[str, str]) -> S:
    values = {}
    for name in model.model_fields:
        value = getattr(args, name, None)
        if value is None:
            value = environ.get(env_name(name))
        if value is not None:
            values[name] = value
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{flag_name(str(e['loc'][0]))} / {env_name(str(e['loc'][0]))}: {e['msg']}" for e in exc.errors()
        )
        raise SystemExit(f"invalid settings: {problems}") from None


def load(model: type[S], argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None,
         *, prog: str | None = None, description: str | None = None) -> S:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser, model)
    args = parser.parse_args(argv)
    return from_namespace(model, args, os.environ if environ is None else environ)
