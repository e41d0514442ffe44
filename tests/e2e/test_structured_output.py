"""Structured output end to end: with a JSON Schema response format every answer of SmolLM2-135M parses
and validates (checked with `jsonschema`), whatever the prompt, streamed or not."""

from __future__ import annotations

import json

import jsonschema
import openai
import pydantic
import pytest

from tests.conftest import SMOLLM2_ALIAS

pytestmark = pytest.mark.e2e

# Strings and arrays are bounded so that every answer ends within max_tokens.
PERSON = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 20},
    "age": {"type": "integer", "minimum": 0, "maximum": 120},
    "email": {"type": "string", "format": "email", "maxLength": 40},
    "role": {"enum": ["admin", "editor", "viewer"]}},
    "required": ["name", "age", "email", "role"], "additionalProperties": False}
ORDER = {"type": "object", "$defs": {"line": {"type": "object", "properties": {
    "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
    "quantity": {"type": "integer", "minimum": 1, "maximum": 9}},
    "required": ["sku", "quantity"], "additionalProperties": False}},
    "properties": {"lines": {"type": "array", "items": {"$ref": "#/$defs/line"}, "minItems": 1, "maxItems": 3},
                   "status": {"enum": ["open", "shipped", "cancelled"]},
                   "note": {"anyOf": [{"type": "string", "maxLength": 30}, {"type": "null"}]}},
    "required": ["lines", "status", "note"], "additionalProperties": False}
EVENT = {"type": "object", "properties": {
    "title": {"type": "string", "minLength": 3, "maxLength": 30},
    "date": {"type": "string", "format": "date"},
    "place": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                               "indoor": {"type": "boolean"}},
              "required": ["city", "indoor"], "additionalProperties": False},
    "tags": {"type": "array", "items": {"enum": ["music", "food", "sport", "art"]}, "maxItems": 3}},
    "required": ["title", "date", "place", "tags"], "additionalProperties": False}
READING = {"type": "object", "properties": {
    "celsius": {"type": "number", "minimum": -50, "maximum": 50, "multipleOf": 0.5},
    "humid": {"type": "boolean"},
    "station": {"type": "string", "pattern": "^ST[0-9]{3}$"}},
    "required": ["celsius", "humid", "station"], "additionalProperties": False}
SCHEMAS = {"person": PERSON, "order": ORDER, "event": EVENT, "reading": READING}
PROMPTS = ["Describe a person.", "Invent an example for a small shop.", "Tell me about your weekend."]


def json_schema(name: str) -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": SCHEMAS[name], "strict": True}}


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def validate(text: str, schema: dict) -> dict:
    value = json.loads(text)
    jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())
    return value


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("name", SCHEMAS)
def test_every_answer_validates_against_its_schema(client, name, prompt):
    choice = client.chat.completions.create(model=SMOLLM2_ALIAS, messages=user(prompt), temperature=0,
                                            max_tokens=250, response_format=json_schema(name)).choices[0]
    assert choice.finish_reason == "stop"
    validate(choice.message.content, SCHEMAS[name])


def test_sampled_choices_validate_too(client):
    completion = client.chat.completions.create(model=SMOLLM2_ALIAS, messages=user(PROMPTS[0]), temperature=1.0,
                                                seed=11, n=3, max_tokens=250, response_format=json_schema("event"))
    for choice in completion.choices:
        assert choice.finish_reason == "stop"
        validate(choice.message.content, EVENT)


@pytest.mark.parametrize("name", ["order", "event"])
def test_a_streamed_answer_is_the_non_streamed_one(client, name):
    request = {"model": SMOLLM2_ALIAS, "messages": user(PROMPTS[1]), "temperature": 0, "max_tokens": 250,
               "response_format": json_schema(name)}
    whole = client.chat.completions.create(**request).choices[0].message.content
    streamed = "".join(chunk.choices[0].delta.content or ""
                       for chunk in client.chat.completions.create(stream=True, **request))
    assert streamed == whole
    validate(streamed, SCHEMAS[name])


@pytest.mark.parametrize("prompt", PROMPTS)
def test_json_object_answers_are_json_objects(client, prompt):
    choice = client.chat.completions.create(model=SMOLLM2_ALIAS, messages=user(prompt), temperature=0,
                                            max_tokens=250, response_format={"type": "json_object"}).choices[0]
    if choice.finish_reason == "stop":
        assert isinstance(json.loads(choice.message.content), dict)
    else:
        # An open object may run past any budget; what there is still starts as one.
        assert choice.finish_reason == "length" and choice.message.content.startswith("{")


class Guest(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=20)
    age: int = pydantic.Field(ge=0, le=120)


class Booking(pydantic.BaseModel):
    date: str = pydantic.Field(json_schema_extra={"format": "date"})
    guests: list[Guest] = pydantic.Field(min_length=1, max_length=3)


def test_the_sdk_parse_helper_gets_its_pydantic_model(client):
    # The SDK turns the model into a strict schema (titles, $defs, additionalProperties false) itself.
    completion = client.chat.completions.parse(model=SMOLLM2_ALIAS, temperature=0, max_tokens=250,
                                               messages=user("Book a table for Ann and Bob on 2026-12-24."),
                                               response_format=Booking)
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Booking) and 1 <= len(parsed.guests) <= 3


def test_json_cut_short_by_max_tokens_finishes_with_length(client):
    choice = client.chat.completions.create(model=SMOLLM2_ALIAS, messages=user(PROMPTS[0]), max_tokens=8,
                                            response_format=json_schema("person")).choices[0]
    assert choice.finish_reason == "length"
    with pytest.raises(ValueError):
        json.loads(choice.message.content)


@pytest.mark.parametrize("schema, named", [
    ({"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}}, "'uniqueItems'"),
    ({"type": "object", "properties": {"a": {"type": "string", "format": "uri"}}}, "'uri'"),
])
def test_a_schema_feature_that_cannot_be_enforced_is_a_400_naming_it(client, schema, named):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=SMOLLM2_ALIAS, messages=user(PROMPTS[0]), response_format={
            "type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    error = caught.value.body
    assert error["param"] == "response_format"
    assert named in error["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_pattern_the_grammar_engine_refuses_is_a_400_on_response_format(client, stream):
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "^(?=x)x+$"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        response = client.chat.completions.create(
            model=SMOLLM2_ALIAS, messages=user(PROMPTS[0]), stream=stream,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
        list(response) if stream else None
    assert caught.value.body["param"] == "response_format"
    assert "look-around" in caught.value.body["message"]
