"""`ingot chat [PROMPT]`: talk to a model of a running ingot from the terminal.

With a prompt it answers once and exits (scriptable); without one it reads turns from standard input and
keeps the conversation, streaming each answer as it is generated. It uses the same OpenAI route as any
client, so errors read as the server wrote them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence

from ingot.common import settings
from ingot.edgeclient import ClientSettings, CommandError, open_endpoint


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="ingot chat", description=__doc__.splitlines()[0])
    settings.add_arguments(top, ClientSettings)
    top.add_argument("prompt", nargs="?", help="answer this once and exit; without it, chat turn by turn")
    top.add_argument("--model", default="smollm2-135m-instruct", help="model name or alias")
    top.add_argument("--system", help="a system message that opens the conversation")
    top.add_argument("--max-tokens", type=int, default=512, help="tokens per answer at most")
    top.add_argument("--temperature", type=float, help="0 is greedy; unset keeps the model's default")
    return top


def stream_answer(endpoint: str, body: dict) -> Iterator[str]:
    with open_endpoint(endpoint, "POST", "/v1/chat/completions", body={**body, "stream": True}) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise CommandError(chunk["error"].get("message", "the stream failed"))
            for choice in chunk.get("choices", []):
                if choice["delta"].get("content"):
                    yield choice["delta"]["content"]


def answer(endpoint: str, args: argparse.Namespace, messages: list[dict]) -> str:
    body = {"model": args.model, "messages": messages, "max_tokens": args.max_tokens}
    if args.temperature is not None:
        body["temperature"] = args.temperature
    parts = []
    for piece in stream_answer(endpoint, body):
        parts.append(piece)
        print(piece, end="", flush=True)
    print(flush=True)
    return "".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    endpoint = settings.from_namespace(ClientSettings, args, os.environ).endpoint
    messages = [{"role": "system", "content": args.system}] if args.system else []
    try:
        if args.prompt is not None:
            answer(endpoint, args, [*messages, {"role": "user", "content": args.prompt}])
            return 0
        interactive = sys.stdin.isatty()
        while True:
            if interactive:
                print("> ", end="", flush=True)
            line = sys.stdin.readline()
            if not line:
                return 0
            if not line.strip():
                continue
            messages.append({"role": "user", "content": line.rstrip("\n")})
            messages.append({"role": "assistant", "content": answer(endpoint, args, messages)})
    except CommandError as exc:
        print(f"ingot chat: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
