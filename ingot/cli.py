"""The `ingot` command: the launcher, each service alone, the model commands, and the model build."""

from __future__ import annotations

import importlib
import sys

# Each entry point's module exposes main(argv); importing lazily keeps `ingot edge` from loading
# onnxruntime and `ingot inference` from loading aiohttp.
COMMANDS = {
    "serve": ("ingot.launcher", "start every service and the edge, watch and restart them"),
    "edge": ("edge.server", "the HTTP edge alone"),
    "tokenizer": ("services.tokenizer.server", "the tokenizer service alone"),
    "registry": ("services.registry.server", "the model registry service alone"),
    "inference": ("services.inference.server", "the inference service alone"),
    "embeddings": ("services.embeddings.server", "the embeddings service alone"),
    "chat": ("ingot.chatcli", "chat with a model of a running ingot, once or turn by turn"),
    "model": ("ingot.modelcli", "list, download, load, unload or remove models of a running ingot"),
    "build-models": ("ingot.modelbuild.__main__", "build the default models into the cache"),
    "seed-models": ("ingot.seedmodels", "copy the models baked into a container image into the cache"),
    "probe": ("ingot.probe", "check one service's health (grpc://HOST:PORT or an http URL), for container health checks"),
    "protos": ("ingot.protogen", "generate the Python code for protos/"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name.ljust(width)}  {help_text}" for name, (_, help_text) in COMMANDS.items()]
    return "usage: ingot COMMAND [options]\n\ncommands:\n" + "\n".join(lines) + "\n\n`ingot COMMAND --help` for its options."


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"ingot: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
