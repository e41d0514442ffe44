"""`ingot serve`: every service as its own process, watched and restarted, then the edge.

The launcher learns each child's address from the line the child prints ("ingot NAME listening on ADDR"),
so a service asked to listen on port 0 still gets a stable address: a restart reuses the bound port, and
the callers' channels reconnect to it without being restarted themselves.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import Field

from ingot.common import logs, settings
from ingot.common.meshtls import MeshTlsSettings, channel_credentials

log = logging.getLogger("ingot.launcher")

LISTENING = re.compile(r"^ingot (\S+) listening on (\S+)")


class LauncherSettings(MeshTlsSettings):
    host: str = Field("127.0.0.1", description="address the HTTP edge listens on")
    port: int = Field(5272, ge=0, le=65535, description="port the HTTP edge listens on")
    grpc_port: int = Field(0, ge=0, le=65535, description="port of the edge's public gRPC API (ingot.api.v1), "
                           "beside HTTP; 0: off")
    home: Path = settings.home_field()
    catalog_url: str = Field("", description="URL of the remote model catalog, handed to the registry; empty: none")
    registry_listen: str = Field("127.0.0.1:50052", description="gRPC address of the registry service")
    tokenizer_listen: str = Field("127.0.0.1:50051", description="gRPC address of the tokenizer service")
    inference_listen: str = Field("127.0.0.1:50053", description="gRPC address of the inference service")
    embeddings_listen: str = Field("127.0.0.1:50054", description="gRPC address of the embeddings service")
    startup_timeout: float = Field(120.0, gt=0, description="seconds a service may take to answer SERVING")
    stop_grace: float = Field(10.0, ge=0, description="seconds a service gets to stop before it is killed")
    shutdown_grace: float = Field(30.0, ge=0, description="seconds requests in flight may take to finish after "
                                  "SIGTERM, while the edge answers new ones with 503")
    log_level: str = Field("info", description="logging level, passed to every service")
    deployments: Path | None = Field(None, description="deployments file (YAML or JSON), handed to the registry")
    import_dirs: str = Field("", description="folders GGUF imports may read, separated by ':', handed to the "
                             "registry; empty: HOME/imports only")
    # The public side's auth and TLS, handed to the edge (see `ingot edge --help`).
    api_keys: str = Field("", description="API keys the edge accepts, comma-separated (passed in its environment)")
    api_key_file: Path | None = Field(None, description="file of API keys, one a line, re-read when it changes")
    jwt_issuer: str = Field("", description="issuer a keyless bearer token must carry")
    jwt_audience: str = Field("", description="audience a keyless bearer token must carry")
    jwks: str = Field("", description="the token issuer's key set: a file path or an https URL")
    tls_cert: Path | None = Field(None, description="PEM certificate chain; with --tls-key the edge serves HTTPS")
    tls_key: Path | None = Field(None, description="PEM private key of --tls-cert")
    content_safety_terms: Path | None = Field(None, description="content filter term lists for the edge")
    metrics_port: int = Field(0, ge=0, le=65535, description="the registry's Prometheus port; the tokenizer, "
                              "inference and embeddings services take the next three; 0: none")


@dataclass
class Child:
    name: str
    argv: list[str]
    # Added to the inherited environment; secrets go here rather than on a command line others can read.
    env: dict[str, str] = field(default_factory=dict)
    # Where it listens once it said so; restarts reuse it.
    address: str | None = None
    grpc_address: str | None = None
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    listening: asyncio.Event = field(default_factory=asyncio.Event)

    def command(self) -> list[str]:
        argv = list(self.argv)
        if self.address is not None and self.name != "edge":
            argv[argv.index("--listen") + 1] = self.address
        return [sys.executable, "-m", "ingot.cli", self.name, *argv]


async def _relay(child: Child, stream: asyncio.StreamReader) -> None:
    while line := await stream.readline():
        text = line.decode(errors="replace").rstrip()
        if (match := LISTENING.match(text)) and match.group(1) == f"{child.name}-grpc":
            # The edge prints its gRPC API's address before its HTTP one.
            child.grpc_address = match.group(2)
        if (match := LISTENING.match(text)) and match.group(1) == child.name:
            child.address = match.group(2)
            child.listening.set()
        print(f"[{child.name}] {text}", flush=True)


async def _spawn(child: Child) -> None:
    child.listening.clear()
    child.process = await asyncio.create_subprocess_exec(*child.command(), stdout=asyncio.subprocess.PIPE,
                                                         env={**os.environ, **child.env} if child.env else None)
    child.started_at = time.monotonic()
    assert child.process.stdout is not None
    asyncio.create_task(_relay(child, child.process.stdout))


async def _serving(address: str, credentials: grpc.ChannelCredentials | None) -> bool:
    channel = (grpc.aio.secure_channel(address, credentials) if credentials is not None
               else grpc.aio.insecure_channel(address))
    async with channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1.0)
        except grpc.RpcError:
            return False
    return response.status == health_pb2.HealthCheckResponse.SERVING


async def _wait_ready(child: Child, timeout: float, credentials: grpc.ChannelCredentials | None) -> None:
    deadline = time.monotonic() + timeout
    assert child.process is not None
    waiter = asyncio.create_task(child.process.wait())
    try:
        listening = asyncio.create_task(child.listening.wait())
        done, _ = await asyncio.wait({listening, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
        if waiter in done:
            raise RuntimeError(f"{child.name} exited with code {child.process.returncode} before it listened")
        if not child.listening.is_set():
            raise RuntimeError(f"{child.name} did not listen within {timeout:.0f} s")
        if child.name == "edge":
            return
        while not await _serving(child.address or "", credentials):
            if waiter.done():
                raise RuntimeError(f"{child.name} exited with code {child.process.returncode} while starting")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} did not answer SERVING within {timeout:.0f} s")
            await asyncio.sleep(0.1)
    finally:
        waiter.cancel()


async def _stop(child: Child, grace: float) -> None:
    process = child.process
    if process is None or process.returncode is not None:
        return
    process.terminate()
    try:
        async with asyncio.timeout(grace):
            await process.wait()
    except TimeoutError:
        log.warning("%s did not stop within %.0f s; killing it", child.name, grace)
        process.kill()
        await process.wait()


def _optional(**values: object) -> list[str]:
    """Flags for the settings that are set; an unset one leaves the child its own default."""
    return [item for name, value in values.items() if value for item in (settings.flag_name(name), str(value))]


class Launcher:
    def __init__(self, config: LauncherSettings) -> None:
        self.config = config
        self.stopping = asyncio.Event()
        common = ["--log-level", config.log_level]
        self.registry = Child("registry", ["--listen", config.registry_listen, "--home", str(config.home),
                                           "--catalog-url", config.catalog_url, *common,
                                           *_optional(deployments=config.deployments, import_dirs=config.import_dirs)])
        self.tokenizer = Child("tokenizer", ["--listen", config.tokenizer_listen, *common])
        self.inference = Child("inference", ["--listen", config.inference_listen, *common])
        self.embeddings = Child("embeddings", ["--listen", config.embeddings_listen, *common])
        self.edge = Child("edge", [])
        self.services = [self.registry, self.tokenizer, self.inference, self.embeddings]
        self.credentials = channel_credentials(config)
        if config.mesh_tls:
            # Every process, the edge included, serves and calls the mesh over mutual TLS.
            mesh = {"INGOT_MESH_CA": config.mesh_ca, "INGOT_MESH_CERT": config.mesh_cert,
                    "INGOT_MESH_KEY": config.mesh_key}
            for child in (*self.services, self.edge):
                child.env.update({name: str(path.expanduser().absolute()) for name, path in mesh.items()})
        if config.metrics_port:
            for offset, service in enumerate(self.services):
                service.argv += ["--metrics-port", str(config.metrics_port + offset)]

    async def _start(self, child: Child) -> None:
        await _spawn(child)
        await _wait_ready(child, self.config.startup_timeout, self.credentials)
        # Operators and the end-to-end tests read these lines: where each child is and which pid it has.
        print(f"ingot serve: {child.name} ready on {child.address} (pid {child.process.pid})", flush=True)

    async def start(self) -> None:
        await self._start(self.registry)
        dependants = (self.tokenizer, self.inference, self.embeddings)
        for dependant in dependants:
            dependant.argv += ["--registry-address", self.registry.address]
        await asyncio.gather(*(self._start(dependant) for dependant in dependants))
        c = self.config
        self.edge.argv = [
            "--host", c.host, "--port", str(c.port), "--grpc-port", str(c.grpc_port), "--log-level", c.log_level,
            "--home", str(c.home),
            "--shutdown-grace", str(c.shutdown_grace),
            "--registry-address", self.registry.address, "--tokenizer-address", self.tokenizer.address,
            "--inference-address", self.inference.address, "--embeddings-address", self.embeddings.address,
            *_optional(api_key_file=c.api_key_file, jwt_issuer=c.jwt_issuer, jwt_audience=c.jwt_audience,
                       jwks=c.jwks, tls_cert=c.tls_cert, tls_key=c.tls_key,
                       content_safety_terms=c.content_safety_terms),
        ]
        if c.api_keys:
            self.edge.env["INGOT_API_KEYS"] = c.api_keys
        await self._start(self.edge)
        if self.edge.grpc_address:
            print(f"ingot serve: gRPC API ready on {self.edge.grpc_address}", flush=True)
        print(f"ingot ready on {self.edge.address}", flush=True)

    async def watch(self, child: Child) -> None:
        """Restarts the child whenever it dies, backing off while it keeps dying young."""
        delay = 0.5
        while not self.stopping.is_set():
            assert child.process is not None
            code = await child.process.wait()
            if self.stopping.is_set():
                return
            if time.monotonic() - child.started_at > 30:
                delay = 0.5
            child.restarts += 1
            log.error("%s exited with code %s; restart %d in %.1f s", child.name, code, child.restarts, delay)
            try:
                async with asyncio.timeout(delay):
                    await self.stopping.wait()
                return
            except TimeoutError:
                pass
            delay = min(delay * 2, 10.0)
            try:
                await self._start(child)
            except RuntimeError as exc:
                log.error("restarting %s failed: %s", child.name, exc)

    async def stop(self) -> None:
        self.stopping.set()
        # The edge first, and only once it has drained (its requests in flight still need the services);
        # then the services, the registry last.
        await _stop(self.edge, self.config.shutdown_grace + self.config.stop_grace)
        for child in (self.tokenizer, self.inference, self.embeddings, self.registry):
            await _stop(child, self.config.stop_grace)


async def serve(config: LauncherSettings) -> int:
    launcher = Launcher(config)
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signalled.set)
    starting = asyncio.create_task(launcher.start())
    signal_wait = asyncio.create_task(signalled.wait())
    await asyncio.wait({starting, signal_wait}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done() or starting.exception() is not None:
        if starting.done():
            log.error("ingot could not start: %s", starting.exception())
        starting.cancel()
        await launcher.stop()
        return 1 if not signalled.is_set() else 0
    watchers = [asyncio.create_task(launcher.watch(c)) for c in (*launcher.services, launcher.edge)]
    await signal_wait
    log.info("stopping")
    await launcher.stop()
    for watcher in watchers:
        watcher.cancel()
    return 0


def main(argv: list[str] | None = None) -> int:
    config = settings.load(LauncherSettings, argv, prog="ingot serve",
                           description="Start every ingot service and the HTTP edge; restart any that dies.")
    logs.configure("launcher", config.log_level)
    return asyncio.run(serve(config))
