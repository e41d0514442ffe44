"""`ingot edge`: the HTTP edge alone."""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Sequence

from aiohttp import web

from edge.app import create_app
from edge.settings import EdgeSettings
from ingot.common.telemetry import configure
from ingot.common.settings import load


def _announcer(settings: EdgeSettings) -> Callable[[str], None]:
    def announce(message: str) -> None:
        # run_app reports what it bound ("======== Running on http://127.0.0.1:5272 ========"), which
        # holds the real port when port 0 was asked for; the launcher and operators read our line instead.
        match = re.search(r"Running on (\S+?) =", message)
        url = match.group(1) if match else f"http://{settings.host}:{settings.port}"
        print(f"ingot edge listening on {url}", flush=True)

    return announce


def ssl_context(settings: EdgeSettings) -> ssl.SSLContext | None:
    if settings.tls_cert is None and settings.tls_key is None:
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise SystemExit("invalid settings: --tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


def main(argv: Sequence[str] | None = None) -> int:
    settings = load(EdgeSettings, argv, prog="ingot edge",
                    description="The HTTP edge: OpenAI's API in front of the ingot gRPC services.")
    configure("edge", settings)
    web.run_app(create_app(settings), host=settings.host, port=settings.port, handler_cancellation=True,
                ssl_context=ssl_context(settings), keepalive_timeout=settings.keepalive_timeout,
                print=_announcer(settings))
    return 0
