"""Which JSON Schema keywords constrained decoding enforces: the one place that refuses the others.

A schema reaches llguidance (through the inference service) as a `response_format` or as a function's
`parameters`. llguidance enforces most of JSON Schema, refuses some keywords with an error, and silently
ignores any keyword it does not know; an ignored keyword would let through output that does not
validate. So every keyword is checked here against what llguidance 1.x in onnxruntime-genai 0.18 was
found to enforce, and anything else is a 400 naming the keyword and where it is, never a silent fallback.

What was found, keyword by keyword (generating with each, and validating the output with `jsonschema`):
- enforced: type (one or a list), enum, const, anyOf, allOf, oneOf (only where llguidance can prove the
  branches disjoint; otherwise it errors itself), $ref to the same document (recursion too), properties,
  required, additionalProperties, patternProperties, minProperties and maxProperties (only where every
  listed property is required; otherwise it errors), items, prefixItems, additionalItems, minItems,
  maxItems, minLength, maxLength, pattern (Rust regex syntax: no look-around, no backreferences; errors
  otherwise), format (the nine below; other formats error), minimum, maximum, exclusiveMinimum,
  exclusiveMaximum, multipleOf;
- refused by llguidance with an error: not, if/then/else, uniqueItems, contains, minContains,
  maxContains, propertyNames, dependentRequired, dependentSchemas, dependencies, unevaluatedItems,
  unevaluatedProperties, $dynamicRef, $dynamicAnchor, $recursiveRef, $recursiveAnchor, remote $ref;
- silently ignored: contentEncoding, contentMediaType, contentSchema, nullable, discriminator, $vocabulary,
  format "unknown", and any keyword it does not know (a misspelling such as "maxLenght" included).
Annotations that assert nothing (title, description, default, examples...) are fine to ignore.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ingot.common.errors import InvalidArgument

# Keywords whose value is one schema, a list of schemas, or a map of names to schemas.
_SCHEMA = ("additionalProperties", "additionalItems")
_SCHEMA_OR_LIST = ("items",)
_SCHEMA_LIST = ("anyOf", "allOf", "oneOf", "prefixItems")
_SCHEMA_MAP = ("properties", "patternProperties", "$defs", "definitions")
_ASSERTIONS = frozenset((
    "type", "enum", "const", "required", "minProperties", "maxProperties", "minItems", "maxItems",
    "minLength", "maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "$ref",
))
_ANNOTATIONS = frozenset((
    "$schema", "$id", "$anchor", "$comment", "title", "description", "default", "examples", "deprecated",
    "readOnly", "writeOnly",
))
ENFORCED = frozenset((*_SCHEMA, *_SCHEMA_OR_LIST, *_SCHEMA_LIST, *_SCHEMA_MAP, *_ASSERTIONS))
FORMATS = frozenset(("date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"))


class UnsupportedSchema(ValueError):
    def __init__(self, reason: str, where: str) -> None:
        super().__init__(f"{reason} (at {where or '/'})")
        self.reason = reason
        self.where = where or "/"


def _pointer(path: str, key: str | int) -> str:
    return f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"


def _subschemas(schema: dict[str, Any], path: str) -> Iterator[tuple[Any, str]]:
    for key, value in schema.items():
        where = _pointer(path, key)
        if key in _SCHEMA or (key in _SCHEMA_OR_LIST and not isinstance(value, list)):
            yield value, where
        elif key in _SCHEMA_LIST or key in _SCHEMA_OR_LIST:
            if not isinstance(value, list):
                raise UnsupportedSchema(f"'{key}' must be an array of schemas", where)
            yield from ((item, _pointer(where, i)) for i, item in enumerate(value))
        elif key in _SCHEMA_MAP:
            if not isinstance(value, dict):
                raise UnsupportedSchema(f"'{key}' must be an object of schemas", where)
            yield from ((item, _pointer(where, name)) for name, item in value.items())


def _check(schema: Any, path: str) -> None:
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise UnsupportedSchema("a schema must be an object or a boolean", path)
    for key, value in schema.items():
        if key in _ANNOTATIONS:
            continue
        if key not in ENFORCED:
            raise UnsupportedSchema(f"the keyword '{key}' cannot be enforced by constrained decoding", path)
        if key == "format" and value not in FORMATS:
            raise UnsupportedSchema(f"the format '{value}' cannot be enforced (supported: "
                                    f"{', '.join(sorted(FORMATS))})", path)
        if key == "$ref" and not (isinstance(value, str) and value.startswith("#")):
            raise UnsupportedSchema(f"the reference {value!r} is not within the schema; only local references "
                                    "('#/...') are supported", path)
    for subschema, where in _subschemas(schema, path):
        _check(subschema, where)


def check_schema(schema: Any) -> None:
    """Raises UnsupportedSchema for the first part of `schema` that constrained decoding cannot enforce."""
    _check(schema, "")


def check_request_schema(schema: Any, param: str) -> None:
    """check_schema as a 400 on `param`."""
    try:
        check_schema(schema)
    except UnsupportedSchema as exc:
        raise InvalidArgument(f"Invalid schema for '{param}': {exc.reason} (at {exc.where}).", param=param,
                              code="unsupported_schema") from None
