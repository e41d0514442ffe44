"""The generated Python code matches protos/, and the protos keep buf's conventions."""

from __future__ import annotations

import re

from ingot import protogen


def test_generated_code_is_not_stale(tmp_path):
    fresh = protogen.generate(tmp_path)
    stale = []
    for path in fresh:
        installed = protogen.ROOT / path.relative_to(tmp_path)
        if not installed.exists() or installed.read_bytes() != path.read_bytes():
            stale.append(str(installed.relative_to(protogen.ROOT)))
    assert not stale, f"generated code differs from protos/; run `make protos`: {stale}"


def test_every_proto_declares_the_package_of_its_folder():
    for proto in protogen.proto_files():
        folder = proto.parent.relative_to(protogen.PROTO_ROOT)
        package = re.search(r"^package ([\w.]+);", proto.read_text(), re.M).group(1)
        assert package == ".".join(folder.parts), proto
        assert re.fullmatch(r"ingot\.\w+\.v\d+", package)


def test_services_end_in_service_and_enums_start_unspecified():
    for proto in protogen.proto_files():
        text = proto.read_text()
        for service in re.findall(r"^service (\w+)", text, re.M):
            assert service.endswith("Service"), service
        for enum, body in re.findall(r"^enum (\w+) \{(.*?)^\}", text, re.M | re.S):
            prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum).upper()
            values = re.findall(r"^\s+(\w+) = (\d+);", body, re.M)
            assert values[0] == (f"{prefix}_UNSPECIFIED", "0"), enum
            assert all(name.startswith(prefix + "_") for name, _ in values), enum


def test_each_rpc_has_its_own_request_and_response():
    for proto in protogen.proto_files():
        for rpc, request, response in re.findall(r"rpc (\w+)\((\w+)\) returns \((?:stream )?(\w+)\)", proto.read_text()):
            assert (request, response) == (f"{rpc}Request", f"{rpc}Response"), rpc
