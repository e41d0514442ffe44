"""Mutual TLS between the processes of the mesh, for an operator who locks it down without a service mesh.

With a CA, a certificate and its key set, every service serves only over TLS and accepts only callers that
present a certificate the CA signed, and every caller (the edge, the services that call the registry, the
launcher's health checks) presents its own and checks the service's against the same CA. A service's
certificate must name the address it is called by (a DNS or IP subject alternative name), as for any TLS.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from pydantic import Field, model_validator

from ingot.common.settings import SettingsBase


class MeshTlsSettings(SettingsBase):
    mesh_ca: Path | None = Field(None, description="PEM CA that signs every mesh certificate; with --mesh-cert and "
                                 "--mesh-key, the services speak mutual TLS only")
    mesh_cert: Path | None = Field(None, description="PEM certificate this process presents on the mesh, as server "
                                   "and as client")
    mesh_key: Path | None = Field(None, description="PEM private key of --mesh-cert")

    @model_validator(mode="after")
    def _all_or_none(self) -> MeshTlsSettings:
        given = [self.mesh_ca, self.mesh_cert, self.mesh_key]
        if any(given) and not all(given):
            raise ValueError("--mesh-ca, --mesh-cert and --mesh-key go together")
        return self

    @property
    def mesh_tls(self) -> bool:
        return self.mesh_ca is not None


def _read(settings: MeshTlsSettings) -> tuple[bytes, bytes, bytes]:
    assert settings.mesh_ca and settings.mesh_cert and settings.mesh_key
    return settings.mesh_ca.read_bytes(), settings.mesh_cert.read_bytes(), settings.mesh_key.read_bytes()


def server_credentials(settings: MeshTlsSettings) -> grpc.ServerCredentials | None:
    """A service's credentials: TLS that requires a client certificate the mesh CA signed; None: plaintext."""
    if not settings.mesh_tls:
        return None
    ca, cert, key = _read(settings)
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def channel_credentials(settings: MeshTlsSettings) -> grpc.ChannelCredentials | None:
    """A caller's credentials: its certificate, and the mesh CA to check the service's; None: plaintext."""
    if not settings.mesh_tls:
        return None
    ca, cert, key = _read(settings)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
