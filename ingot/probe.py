"""`ingot probe`: one health check for container runtimes that run a command, not a gRPC or HTTP probe.

Compose's health checks execute a program inside the container, and the image has no curl or grpc_health_probe
(and needs no shell). `grpc://HOST:PORT` asks grpc.health.v1 for the server's overall status; an http(s) URL
must answer 2xx. Exit status 0 means healthy, 1 not.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import Field

from ingot.common import settings


class ProbeSettings(settings.SettingsBase):
    probe_url: str = Field(..., min_length=1, description="grpc://HOST:PORT (grpc.health.v1) or an http(s) URL "
                           "that must answer 2xx")
    probe_timeout: float = Field(2.0, gt=0, description="seconds the check may take")


def check_grpc(address: str, timeout: float) -> str | None:
    """None when the server answers SERVING, else what it answered."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError as err:
            return err.code().name
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return None if status == "SERVING" else status


def check_http(url: str, timeout: float) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 (the scheme is checked)
            return None if 200 <= reply.status < 300 else f"HTTP {reply.status}"
    except urllib.error.HTTPError as err:
        return f"HTTP {err.code}"
    except (urllib.error.URLError, OSError) as err:
        return str(err)


def main(argv: list[str] | None = None) -> int:
    config = settings.load(ProbeSettings, argv, prog="ingot probe", description=__doc__.splitlines()[0])
    parts = urlsplit(config.probe_url)
    if parts.scheme == "grpc" and parts.netloc:
        problem = check_grpc(parts.netloc, config.probe_timeout)
    elif parts.scheme in ("http", "https"):
        problem = check_http(config.probe_url, config.probe_timeout)
    else:
        raise SystemExit(f"ingot probe: --probe-url must be grpc://HOST:PORT or an http(s) URL, not {config.probe_url!r}")
    if problem is not None:
        print(f"ingot probe: {config.probe_url}: {problem}", file=sys.stderr)
        return 1
    return 0
