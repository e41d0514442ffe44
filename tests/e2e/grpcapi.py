"""A mesh with the public gRPC API on, API keys required, and what the gRPC API tests share."""

from __future__ import annotations

import re
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2

from tests.e2e.mesh import Mesh, free_port

API_KEY = "grpc-test-key"
GRPC_READY = re.compile(r"^ingot serve: gRPC API ready on grpcs?://(\S+)")
WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
           "required": ["city", "unit"], "additionalProperties": False}
ORDER = {"type": "object", "properties": {"item": {"type": "string", "maxLength": 20},
                                          "quantity": {"type": "integer", "minimum": 1, "maximum": 9}},
         "required": ["item", "quantity"], "additionalProperties": False}


@dataclass
class GrpcMesh:
    mesh: Mesh
    address: str


def start_grpc_mesh(home, *, api_key: str = API_KEY, args: list[str] | None = None,
                    env: dict[str, str] | None = None) -> GrpcMesh:
    mesh = Mesh(home, args=["--grpc-port", str(free_port()), *(args or [])],
                env={"INGOT_API_KEYS": api_key, **(env or {})}).start()
    address = next((m.group(1) for line in mesh.lines if (m := GRPC_READY.match(line))), None)
    if address is None:
        mesh.stop()
        raise AssertionError("ingot serve did not print the gRPC API's address:\n" + "\n".join(mesh.lines[-20:]))
    return GrpcMesh(mesh, address)


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    """The google.rpc.ErrorInfo in a failed call's status details."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    raise AssertionError(f"no ErrorInfo in {error}")
