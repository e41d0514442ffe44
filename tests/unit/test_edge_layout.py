"""The edge's layout holds: only edge/mesh speaks protobuf, and edge/routes.py lists every route table."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

from aiohttp import web

EDGE = Path(__file__).resolve().parents[2] / "edge"
# Generated code: the mesh's own stubs (ingot.<service>.v1, *_pb2, *_pb2_grpc) and grpc's health stubs.
GENERATED = re.compile(r"(^ingot\.\w+\.v\d+(\.|$))|(_pb2(_grpc)?$)|(^grpc_health\.)")


def _imports(path: Path) -> list[str]:
    """Every module `path` imports, wherever the import stands (a function body, a TYPE_CHECKING block)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


# The public gRPC surface's own contract is its schema, as pydantic models are OpenAI's: edge/grpcapi may import
# ingot.api.v1 and nothing else generated; it reaches the services only through the REST routes.
PUBLIC_CONTRACT = re.compile(r"^ingot\.api\.v\d+(\.|$)")


def _generated(path: Path) -> list[str]:
    names = {name for name in _imports(path) if GENERATED.search(name)}
    if path.relative_to(EDGE).parts[:1] == ("grpcapi",):
        names = {name for name in names if not PUBLIC_CONTRACT.search(name)}
    return sorted(names)


def test_only_the_mesh_layer_imports_generated_protobuf_code():
    leaks = {str(path.relative_to(EDGE.parent)): generated
             for path in sorted(EDGE.rglob("*.py")) if "mesh" not in path.relative_to(EDGE).parts[:1]
             if (generated := _generated(path))}
    assert not leaks, f"edge modules outside edge/mesh import generated code: {leaks}"


def test_the_check_sees_a_generated_import():
    # The check above would pass on an empty walk; this keeps it honest about what it recognises.
    assert any(GENERATED.search(name) for name in _imports(EDGE / "mesh" / "backends.py"))
    assert not GENERATED.search("edge.mesh.messages")
    assert PUBLIC_CONTRACT.search("ingot.api.v1.ingot_service_pb2") and not PUBLIC_CONTRACT.search("ingot.registry.v1")


def test_every_route_table_of_the_edge_is_listed_in_routes():
    from edge import routes

    listed = {id(table) for table in routes.ROUTE_TABLES}
    for sub_application in ("edge.azure.app", "edge.databricks.app"):
        listed |= {id(table) for table in importlib.import_module(sub_application).ROUTE_TABLES}
    unlisted = []
    for path in sorted(EDGE.rglob("*.py")):
        module = importlib.import_module(".".join(path.relative_to(EDGE.parent).with_suffix("").parts)
                                         .removesuffix(".__init__"))
        table = getattr(module, "routes", None)
        if isinstance(table, web.RouteTableDef) and id(table) not in listed:
            unlisted.append(module.__name__)
    assert not unlisted, f"route tables no app serves: {unlisted}"
