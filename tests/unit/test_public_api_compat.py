"""The published contract ingot.api.v1 only grows: every field of tests/data/ingot_api_v1.json keeps its number,
type and cardinality, every enum value its number, every RPC its request, response and streaming.

A new field, value, message or RPC is fine; record it with
`PYTHONPATH=. python -m tests.unit.test_public_api_compat` so that it is held from then on. A change to what is
recorded is a breaking change: it belongs in a v2 package, never in v1.
"""

from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import descriptor, descriptor_pb2

from ingot.api.v1 import ingot_service_pb2 as pb

SNAPSHOT = Path(__file__).resolve().parents[1] / "data" / "ingot_api_v1.json"
_TYPES = {value: name.removeprefix("TYPE_").lower()
          for name, value in descriptor_pb2.FieldDescriptorProto.Type.items()}


def _field(field: descriptor.FieldDescriptor) -> dict:
    kind = _TYPES[field.type]
    if field.message_type is not None:
        kind = field.message_type.full_name
    elif field.enum_type is not None:
        kind = field.enum_type.full_name
    # A map's entry is its own message; `repeated` + that entry stands for map<k, v>. An `optional` field sits
    # in a synthetic oneof named after it with a leading underscore, which is no oneof of the contract.
    oneof = field.containing_oneof
    return {"number": field.number, "type": kind, "repeated": field.is_repeated,
            "oneof": oneof.name if oneof is not None and not oneof.name.startswith("_") else None}


def _nested(messages) -> list[descriptor.Descriptor]:
    found = []
    for message in messages:
        found += [message, *_nested(message.nested_types)]
    return found


def _messages() -> dict:
    return {m.full_name: {f.name: _field(f) for f in m.fields}
            for m in _nested(pb.DESCRIPTOR.message_types_by_name.values())}


def _enums() -> dict:
    enums = [*pb.DESCRIPTOR.enum_types_by_name.values(),
             *(e for m in _nested(pb.DESCRIPTOR.message_types_by_name.values()) for e in m.enum_types)]
    return {enum.full_name: {v.name: v.number for v in enum.values} for enum in enums}


def contract() -> dict:
    services = {
        service.full_name: {
            method.name: {"request": method.input_type.full_name, "response": method.output_type.full_name,
                          "server_streaming": method.server_streaming, "client_streaming": method.client_streaming}
            for method in service.methods}
        for service in pb.DESCRIPTOR.services_by_name.values()}
    return {"messages": _messages(), "enums": _enums(), "services": services}


def broken(published: dict, current: dict) -> list[str]:
    """What `current` changed or removed of `published`."""
    problems = []
    for kind in ("messages", "enums", "services"):
        for name, members in published[kind].items():
            now = current[kind].get(name)
            if now is None:
                problems.append(f"{kind[:-1]} {name} was removed")
                continue
            for member, shape in members.items():
                if member not in now:
                    problems.append(f"{name}.{member} was removed (reserve its number instead, in v2)")
                elif now[member] != shape:
                    problems.append(f"{name}.{member} changed from {shape} to {now[member]}")
    return problems


def test_no_published_field_changes_number_or_type():
    published = json.loads(SNAPSHOT.read_text())
    assert broken(published, contract()) == []


def test_the_snapshot_holds_every_field_of_the_contract():
    # Otherwise a field added without recording it could still change unnoticed.
    assert json.loads(SNAPSHOT.read_text()) == contract(), "record the new fields (see this module's docstring)"


def test_a_changed_number_or_type_or_a_removed_field_is_caught():
    published = contract()
    renumbered = json.loads(json.dumps(published))
    renumbered["messages"]["ingot.api.v1.ChatRequest"]["model"]["number"] = 99
    retyped = json.loads(json.dumps(published))
    retyped["messages"]["ingot.api.v1.Sampling"]["temperature"]["type"] = "float"
    removed = json.loads(json.dumps(published))
    del removed["enums"]["ingot.api.v1.Role"]["ROLE_TOOL"]
    assert broken(published, renumbered) == [
        "ingot.api.v1.ChatRequest.model changed from {'number': 1, 'type': 'string', 'repeated': False, "
        "'oneof': None} to {'number': 99, 'type': 'string', 'repeated': False, 'oneof': None}"]
    assert len(broken(published, retyped)) == 1
    assert broken(published, removed) == ["ingot.api.v1.Role.ROLE_TOOL was removed (reserve its number instead, in v2)"]


if __name__ == "__main__":
    SNAPSHOT.write_text(json.dumps(contract(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}")
