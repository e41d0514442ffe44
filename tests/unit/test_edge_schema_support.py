"""The edge refuses every JSON Schema keyword constrained decoding would not enforce, naming it and where."""

from __future__ import annotations

import pytest

from edge.openai.schema_support import UnsupportedSchema, check_request_schema, check_schema
from ingot.common.errors import InvalidArgument

NESTED = {
    "$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Order", "type": "object",
    "$defs": {"item": {"type": "object", "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
                                                        "qty": {"type": "integer", "minimum": 1, "maximum": 9}},
                       "required": ["sku", "qty"], "additionalProperties": False}},
    "properties": {
        "id": {"type": "string", "format": "uuid", "description": "order id"},
        "items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 1, "maxItems": 3},
        "status": {"enum": ["open", "closed"]},
        "note": {"anyOf": [{"type": "string", "maxLength": 20}, {"type": "null"}]},
        "pair": {"type": "array", "prefixItems": [{"type": "number", "multipleOf": 0.5}, {"const": True}]},
        "any": True,
    },
    "required": ["id", "items", "status"], "additionalProperties": False,
}


def test_a_schema_of_enforced_keywords_passes():
    check_schema(NESTED)
    check_schema(True)
    check_schema({})


@pytest.mark.parametrize("keyword, value", [
    ("uniqueItems", True), ("not", {"type": "string"}), ("if", {}), ("contains", {}), ("propertyNames", {}),
    ("dependentRequired", {}), ("unevaluatedProperties", False), ("$dynamicRef", "#a"),
    # Silently ignored by llguidance: output would not have to satisfy them.
    ("contentEncoding", "base64"), ("contentSchema", {}), ("nullable", True), ("discriminator", {}),
    ("maxLenght", 3), ("x-guidance", {"whitespace_flexible": True}),
])
def test_a_keyword_that_is_not_enforced_is_refused_where_it_is(keyword, value):
    schema = {"type": "object", "properties": {"tags": {"type": "array", keyword: value}}}
    with pytest.raises(UnsupportedSchema) as caught:
        check_schema(schema)
    assert f"'{keyword}'" in caught.value.reason
    assert caught.value.where == "/properties/tags"


def test_keywords_are_found_inside_every_kind_of_subschema():
    for schema, where in [
        ({"anyOf": [{"type": "string"}, {"not": {}}]}, "/anyOf/1"),
        ({"$defs": {"a/b": {"uniqueItems": True}}}, "/$defs/a~1b"),
        ({"items": [{"type": "string"}, {"contains": {}}]}, "/items/1"),
        ({"additionalProperties": {"propertyNames": {}}}, "/additionalProperties"),
        ({"patternProperties": {"^x": {"if": {}}}}, "/patternProperties/^x"),
    ]:
        with pytest.raises(UnsupportedSchema) as caught:
            check_schema(schema)
        assert caught.value.where == where


def test_property_names_and_data_are_not_taken_for_keywords():
    check_schema({"properties": {"not": {"type": "string"}, "uniqueItems": {}},
                  "enum": [{"contains": 1}], "const": {"if": 2}, "default": {"not": 3}})


@pytest.mark.parametrize("fmt, ok", [("date-time", True), ("email", True), ("uri", False), ("unknown", False)])
def test_only_the_formats_llguidance_checks_are_accepted(fmt, ok):
    if ok:
        check_schema({"type": "string", "format": fmt})
    else:
        with pytest.raises(UnsupportedSchema, match=f"'{fmt}'"):
            check_schema({"type": "string", "format": fmt})


def test_references_outside_the_schema_are_refused():
    with pytest.raises(UnsupportedSchema, match="only local references"):
        check_schema({"$ref": "https://example.com/schema.json"})


def test_something_that_is_not_a_schema_is_refused():
    with pytest.raises(UnsupportedSchema, match="must be an object or a boolean"):
        check_schema({"properties": {"a": "string"}})
    with pytest.raises(UnsupportedSchema, match="array of schemas"):
        check_schema({"anyOf": {"type": "string"}})


def test_as_a_request_error_it_is_a_400_on_the_parameter():
    with pytest.raises(InvalidArgument) as caught:
        check_request_schema({"uniqueItems": True}, "tools[1].function.parameters")
    assert caught.value.param == "tools[1].function.parameters"
    assert caught.value.http_status == 400
    assert "'uniqueItems'" in caught.value.message and "(at /)" in caught.value.message
