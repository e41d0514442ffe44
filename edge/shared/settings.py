"""The edge's settings: where it listens and where the services it calls are."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from pydantic import Field

from ingot.common import settings
from ingot.common.meshtls import MeshTlsSettings
from ingot.common.telemetry import TelemetrySettings


class EdgeSettings(TelemetrySettings, MeshTlsSettings):
    host: str = Field("127.0.0.1", description="interface the HTTP server binds")
    port: int = Field(5272, ge=0, le=65535, description="HTTP port (Foundry Local's usual one; 0 picks a free port)")
    # Off unless asked for: the public gRPC API is a second door an operator opens on purpose.
    grpc_port: int = Field(0, ge=0, le=65535, description="port of the public gRPC API (ingot.api.v1) on --host, "
                           "beside HTTP, with the same auth and TLS; 0: off")
    tokenizer_address: str = Field("127.0.0.1:50051", min_length=1, description="gRPC target of the tokenizer service")
    registry_address: str = Field("127.0.0.1:50052", min_length=1, description="gRPC target of the registry service")
    inference_address: str = Field("127.0.0.1:50053", min_length=1, description="gRPC target of the inference service")
    # Empty until the embeddings service exists: /ready then leaves it out.
    embeddings_address: str = Field("", description="gRPC target of the embeddings service; empty: not deployed")
    call_timeout: float = Field(10.0, gt=0, description="deadline in seconds of each unary gRPC call")
    # Auth: with none of these set, every route is open (a local server); with any, all but /health and /ready need it.
    api_keys: str = Field("", description="API keys accepted (api-key header or Authorization: Bearer), "
                                          "comma-separated")
    api_key_file: Path | None = Field(None, description="file of API keys, one a line; re-read when it changes")
    jwt_issuer: str = Field("", description="issuer (iss) a keyless bearer token must carry")
    jwt_audience: str = Field("", description="audience (aud) a keyless bearer token must carry")
    jwks: str = Field("", description="the token issuer's key set (JWKS): a file path or an https URL")
    # azure-core sends bearer tokens over https only.
    tls_cert: Path | None = Field(None, description="PEM certificate chain; with --tls-key, serve HTTPS")
    tls_key: Path | None = Field(None, description="PEM private key of --tls-cert")
    content_safety_terms: Path | None = Field(None, description="content filter term lists (YAML or JSON); "
                                              "default: the lists shipped with ingot")
    # Streams may run for minutes, so Generate has no overall deadline; a hung inference service still
    # shows as a 504 because its first message must come within this.
    first_token_timeout: float = Field(120.0, gt=0, description="seconds a generation may take to send its "
                                       "first message before the request fails with 504")
    max_prompt_tokens: int = Field(0, ge=0, description="prompt tokens a request may send; more is a 400 (0: the "
                                   "model's context decides)")
    max_tokens_cap: int = Field(0, ge=0, description="tokens a request may ask to generate per choice; more is a 400 "
                                "(0: the model's own limit)")
    max_body_bytes: int = Field(1024**2, gt=0, description="largest request body accepted; larger is a 413")
    max_concurrent_requests: int = Field(256, gt=0, description="POST requests in flight in total; more get 429")
    max_concurrent_per_key: int = Field(64, gt=0, description="POST requests in flight per API key, across "
                                        "the edges sharing --redis-url; more get 429")
    shutdown_grace: float = Field(30.0, ge=0, description="seconds requests in flight may take to finish after "
                                  "SIGTERM, while new ones get 503")
    keepalive_timeout: float = Field(75.0, gt=0, description="seconds an idle keep-alive connection stays open")
    reuse_port: bool = Field(False, description="let several edge processes listen on this port (replicas on one "
                             "host); otherwise a taken port is an error")
    home: Path = settings.home_field()
    # Without Redis, requests_per_minute and max_concurrent_per_key hold per edge process (N edges allow N times)
    # and stored responses live in SQLite under the home.
    redis_url: str = Field("", description="Redis shared by edge replicas (redis://host:port/db): their rate "
                           "limits, per-key concurrency and stored responses; empty: no Redis, limits per process")
    responses_db: Path | None = Field(None, description="SQLite file of stored responses when there is no Redis; "
                                      "default HOME/responses.sqlite3")
    responses_ttl: float = Field(30 * 24 * 3600.0, gt=0, description="seconds a stored response is kept (OpenAI "
                                 "and Azure keep them 30 days)")
    responses_max: int = Field(100_000, gt=0, description="stored responses kept at most; the oldest go first")


# The settings object an application was made with, for handlers that need one of its limits.
SETTINGS = web.AppKey("settings", EdgeSettings)
