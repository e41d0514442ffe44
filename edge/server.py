"""`ingot edge`: the HTTP edge alone."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import ssl
from collections.abc import Sequence

from aiohttp import web

from edge.app import create_app
from edge.grpcapi.server import GrpcApi
from edge.shared.drain import DRAIN
from edge.shared.settings import EdgeSettings
from ingot.common.telemetry import configure
from ingot.common.settings import load

log = logging.getLogger(__name__)


def ssl_context(settings: EdgeSettings) -> ssl.SSLContext | None:
    if settings.tls_cert is None and settings.tls_key is None:
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise SystemExit("invalid settings: --tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


async def serve(settings: EdgeSettings) -> None:
    app = create_app(settings)
    runner = web.AppRunner(app, handler_cancellation=True, keepalive_timeout=settings.keepalive_timeout)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, ssl_context=ssl_context(settings),
                       reuse_port=settings.reuse_port or None)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        where = f"{settings.host}:{settings.port}"
        if exc.errno == errno.EADDRINUSE:
            raise SystemExit(f"ingot edge: cannot listen on {where}: the address is already in use by another "
                             "process (another ingot?). Stop it, choose another --port, or start every edge "
                             "replica that should share it with --reuse-port (INGOT_REUSE_PORT=1).") from None
        raise SystemExit(f"ingot edge: cannot listen on {where}: {exc.strerror or exc}") from None
    scheme = "https" if settings.tls_cert else "http"
    host, port = runner.addresses[0][:2]
    grpc_api = GrpcApi(settings, port) if settings.grpc_port else None
    if grpc_api is not None:
        grpc_address = await grpc_api.start()
        print(f"ingot edge-grpc listening on {'grpcs' if settings.tls_cert else 'grpc'}://{grpc_address}",
              flush=True)
    # The launcher and operators read this line; it holds the real port when port 0 was asked for.
    print(f"ingot edge listening on {scheme}://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    drain = app[DRAIN]
    drain.begin()
    if grpc_api is not None:
        await grpc_api.draining()
    if not await drain.wait(settings.shutdown_grace):
        log.warning("requests still in flight after the %.0f s grace period are cut off", settings.shutdown_grace)
    if grpc_api is not None:
        await grpc_api.stop(1.0)
    await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    settings = load(EdgeSettings, argv, prog="ingot edge",
                    description="The HTTP edge: OpenAI's API in front of the ingot gRPC services.")
    configure("edge", settings)
    asyncio.run(serve(settings))
    return 0
