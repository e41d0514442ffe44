"""Mutual TLS inside the mesh (`ingot serve --mesh-ca --mesh-cert --mesh-key`): the whole mesh answers a chat
while every service refuses callers without a certificate the mesh CA signed, so RegistryService.DeleteModel
and ImportModel are out of reach of whoever merely reaches their port."""

from __future__ import annotations

import datetime
import ipaddress

import grpc
import openai
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ingot.registry.v1 import registry_service_pb2 as registry_pb
from ingot.registry.v1 import registry_service_pb2_grpc as registry_grpc
from tests.conftest import SMOLLM2_ALIAS
from tests.e2e.mesh import Mesh

pytestmark = pytest.mark.e2e


def _pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _authority(name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca_key, ca_cert, name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    return _pem(key), cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def locked(tmp_path_factory, ingot_home, smollm2_dir):
    folder = tmp_path_factory.mktemp("mesh-tls")
    ca_key, ca_cert = _authority("ingot mesh CA")
    key, cert = _leaf(ca_key, ca_cert, "ingot mesh")
    rogue_key, rogue_cert = _authority("someone else")
    files = {"ca.pem": ca_cert.public_bytes(serialization.Encoding.PEM), "mesh.pem": cert, "mesh-key.pem": key}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    mesh = Mesh(ingot_home, args=["--mesh-ca", str(folder / "ca.pem"), "--mesh-cert", str(folder / "mesh.pem"),
                                  "--mesh-key", str(folder / "mesh-key.pem")]).start()
    yield {"mesh": mesh, "ca": files["ca.pem"], "cert": cert, "key": key,
           "rogue": _leaf(rogue_key, rogue_cert, "intruder")}
    mesh.stop()


def _list_models(address: str, credentials: grpc.ChannelCredentials | None):
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    with channel:
        return registry_grpc.RegistryServiceStub(channel).ListModels(registry_pb.ListModelsRequest(), timeout=10)


def test_the_mesh_answers_a_chat_with_every_hop_over_mutual_tls(locked):
    client = openai.OpenAI(base_url=f"{locked['mesh'].base_url}/v1", api_key="unused", max_retries=0, timeout=120)
    reply = client.chat.completions.create(model=SMOLLM2_ALIAS, messages=[{"role": "user", "content": "Hi"}],
                                           max_tokens=3, temperature=0)
    assert reply.usage.completion_tokens == 3


@pytest.mark.parametrize("service", ["registry", "tokenizer", "inference", "embeddings"])
def test_a_caller_without_a_mesh_certificate_is_refused(locked, service):
    address = locked["mesh"].addresses[service]
    with grpc.insecure_channel(address) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    anonymous = grpc.ssl_channel_credentials(root_certificates=locked["ca"])
    with pytest.raises(grpc.RpcError) as caught:
        _list_models(locked["mesh"].addresses["registry"], anonymous)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_certificate_from_another_ca_is_refused_and_the_mesh_ca_s_accepted(locked):
    address = locked["mesh"].addresses["registry"]
    rogue_key, rogue_cert = locked["rogue"]
    rogue = grpc.ssl_channel_credentials(root_certificates=locked["ca"], private_key=rogue_key,
                                         certificate_chain=rogue_cert)
    with pytest.raises(grpc.RpcError) as caught:
        _list_models(address, rogue)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    member = grpc.ssl_channel_credentials(root_certificates=locked["ca"], private_key=locked["key"],
                                          certificate_chain=locked["cert"])
    assert any(m.alias == SMOLLM2_ALIAS for m in _list_models(address, member).models)
