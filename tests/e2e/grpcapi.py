"""A mesh with the public gRPC API on, API keys required, and what the gRPC API tests share."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

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


def start_grpc_mesh(home) -> GrpcMesh:
    mesh = Mesh(home, args=["--grpc-port", str(free_port())], env={"INGOT_API_KEYS": API_KEY}).start()
    address = next((m.group(1) for line in mesh.lines if (m := GRPC_READY.match(line))), None)
    if address is None:
        mesh.stop()
        raise AssertionError("ingot serve did not print the gRPC API's address:\n" + "\n".join(mesh.lines[-20:]))
    return GrpcMesh(mesh, address)


def schema_json(schema: dict) -> str:
    return json.dumps(schema)
