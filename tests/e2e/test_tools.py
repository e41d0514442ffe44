"""Tool calling end to end: the `openai` SDK against `ingot serve` with SmolLM2-135M, whose chat template
knows nothing of tools. Every call's arguments are validated against its function's schema."""

from __future__ import annotations

import json

import jsonschema
import pytest

from tests.conftest import SMOLLM2_ALIAS

pytestmark = pytest.mark.e2e

WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
           "required": ["city", "unit"], "additionalProperties": False}
ADD = {"type": "object", "properties": {"a": {"type": "integer", "minimum": -1000, "maximum": 1000},
                                        "b": {"type": "integer", "minimum": -1000, "maximum": 1000}},
       "required": ["a", "b"], "additionalProperties": False}
BOOK = {"type": "object", "$defs": {"guest": {"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
            "required": ["name", "age"], "additionalProperties": False}},
        "properties": {"date": {"type": "string", "format": "date"},
                       "guests": {"type": "array", "items": {"$ref": "#/$defs/guest"}, "minItems": 1, "maxItems": 3}},
        "required": ["date", "guests"], "additionalProperties": False}
PARAMETERS = {"get_weather": WEATHER, "add": ADD, "book_table": BOOK}
DESCRIPTIONS = {"get_weather": "Get the current weather in a city", "add": "Add two integers",
                "book_table": "Book a restaurant table for some guests on a date"}
# strict: the SDK's stream helper parses arguments only for strict tools, and refuses others.
TOOLS = [{"type": "function", "function": {"name": name, "description": DESCRIPTIONS[name], "strict": True,
                                           "parameters": parameters}}
         for name, parameters in PARAMETERS.items()]
PROMPTS = ["What is the weather in Paris?", "What is 17 plus 25?", "Book a table for Ann and Bob on 2026-12-24."]
# "<", the first token of "<tool_call>" for SmolLM2: a small nudge makes the model open a call under
# tool_choice "auto". Unaided, the 135M model never chooses a call here: it writes a JSON look-alike as
# text (the README says so). "none" must still refuse the nudge.
LEAN_TO_CALL = {"44": 3}
BOOKING = "Book a table for Ann and Bob on 2026-12-24."


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def ask(client, stream: bool, **request) -> tuple[str | None, list[tuple[str, str, str]], str]:
    """The content, the calls (id, name, arguments) and the finish reason, from either kind of answer; a
    stream is assembled here from its raw deltas, checking that no marker ever shows in the content."""
    request = {"model": SMOLLM2_ALIAS, "temperature": 0, "max_tokens": 120, **request}
    if not stream:
        choice = client.chat.completions.create(**request).choices[0]
        calls = [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
        return choice.message.content, calls, choice.finish_reason
    content, calls, finish = None, {}, None
    for chunk in client.chat.completions.create(stream=True, **request):
        delta = chunk.choices[0].delta
        if delta.content is not None:
            assert "<tool_call>" not in delta.content and "</tool_call>" not in delta.content
            content = (content or "") + delta.content
        for call in delta.tool_calls or []:
            entry = calls.setdefault(call.index, ["", "", ""])
            entry[0] += call.id or ""
            entry[1] += call.function.name or ""
            entry[2] += call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    return content, [tuple(calls[i]) for i in sorted(calls)], finish


def assert_valid(calls, names=PARAMETERS) -> None:
    assert calls
    for call_id, name, arguments in calls:
        assert call_id.startswith("call_")
        assert name in names
        jsonschema.validate(json.loads(arguments), PARAMETERS[name], format_checker=jsonschema.FormatChecker())


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("prompt", PROMPTS)
def test_required_makes_the_answer_a_valid_call(client, prompt, stream):
    content, calls, finish = ask(client, stream, messages=user(prompt), tools=TOOLS, tool_choice="required",
                                 parallel_tool_calls=False)
    assert content is None
    assert_valid(calls)
    assert len(calls) == 1 and finish == "tool_calls"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_parallel_calls_are_each_valid(client, stream):
    # SmolLM2 calls add twice here: parallel calls are allowed by default, as OpenAI allows them.
    content, calls, finish = ask(client, stream, messages=user(PROMPTS[1]), tools=TOOLS, tool_choice="required",
                                 max_tokens=300)
    assert content is None and finish == "tool_calls"
    assert len(calls) >= 2
    assert_valid(calls)
    assert len({call_id for call_id, _, _ in calls}) == len(calls)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_named_function_is_called_whatever_the_prompt(client, stream):
    content, calls, finish = ask(client, stream, messages=user("Tell me a joke."), tools=TOOLS,
                                 tool_choice={"type": "function", "function": {"name": "book_table"}})
    assert content is None and finish == "tool_calls"
    assert [name for _, name, _ in calls] == ["book_table"]
    assert_valid(calls)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_none_never_calls_even_when_the_model_leans_to(client, stream):
    content, calls, finish = ask(client, stream, messages=user(PROMPTS[0]), tools=TOOLS, tool_choice="none",
                                 logit_bias=LEAN_TO_CALL, max_tokens=40)
    assert calls == [] and content
    assert "<tool_call>" not in content
    assert finish in ("stop", "length")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_auto_lets_the_model_answer_in_prose(client, stream):
    content, calls, finish = ask(client, stream, messages=user(PROMPTS[0]), tools=TOOLS, max_tokens=40)
    assert calls == [] and content and "<tool_call>" not in content
    assert finish in ("stop", "length")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_auto_lets_a_model_nudged_towards_a_call_make_it(client, stream):
    content, calls, finish = ask(client, stream, messages=user(BOOKING), tools=TOOLS, tool_choice="auto",
                                 logit_bias=LEAN_TO_CALL, max_tokens=200)
    assert not content
    assert_valid(calls)
    assert finish == "tool_calls"


@pytest.mark.parametrize("request_fields", [
    {"messages": user(PROMPTS[1]), "tool_choice": "required"},
    {"messages": user(BOOKING), "tool_choice": "auto", "logit_bias": LEAN_TO_CALL},
    {"messages": user(PROMPTS[0]), "tool_choice": {"type": "function", "function": {"name": "add"}},
     "parallel_tool_calls": False},
], ids=["required", "auto", "named"])
def test_streamed_calls_assemble_as_the_non_streamed_ones(client, request_fields):
    request = {"model": SMOLLM2_ALIAS, "tools": TOOLS, "temperature": 0, "max_tokens": 300, **request_fields}
    whole = client.chat.completions.create(**request).choices[0]
    with client.chat.completions.stream(**request) as stream:
        streamed = stream.get_final_completion().choices[0]
    assert whole.finish_reason == streamed.finish_reason == "tool_calls"
    assert streamed.message.content == whole.message.content
    assert [(c.function.name, c.function.arguments) for c in streamed.message.tool_calls] == [
        (c.function.name, c.function.arguments) for c in whole.message.tool_calls]
    # The helper parses strict tools' arguments as the SDK's callers read them.
    assert all(c.function.parsed_arguments == json.loads(c.function.arguments) for c in streamed.message.tool_calls)


def test_parallel_tool_calls_false_allows_one_call(client):
    _, calls, finish = ask(client, False, messages=user(PROMPTS[0]), tools=TOOLS, tool_choice="required",
                           parallel_tool_calls=False)
    assert len(calls) == 1 and finish == "tool_calls"
    assert_valid(calls)


def test_a_full_round_trip_answers_from_the_tool_result(client):
    messages = user("What is 17 plus 25?")
    first = client.chat.completions.create(model=SMOLLM2_ALIAS, messages=messages, tools=TOOLS, temperature=0,
                                           tool_choice={"type": "function", "function": {"name": "add"}})
    call = first.choices[0].message.tool_calls[0]
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, ADD)
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": str(arguments["a"] + arguments["b"])}]
    answer = client.chat.completions.create(model=SMOLLM2_ALIAS, messages=messages, tools=TOOLS, temperature=0,
                                            max_tokens=40)
    choice = answer.choices[0]
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    # The model reads the result back: SmolLM2 answers with the sum the tool returned.
    assert str(arguments["a"] + arguments["b"]) in choice.message.content


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_legacy_functions_answer_with_a_function_call(client, stream):
    request = {"model": SMOLLM2_ALIAS, "messages": user(PROMPTS[1]), "temperature": 0, "max_tokens": 80,
               "functions": [tool["function"] for tool in TOOLS], "function_call": {"name": "add"}}
    if stream:
        name, arguments, finish = "", "", None
        for chunk in client.chat.completions.create(stream=True, **request):
            call = chunk.choices[0].delta.function_call
            if call is not None:
                name += call.name or ""
                arguments += call.arguments or ""
            finish = chunk.choices[0].finish_reason or finish
    else:
        choice = client.chat.completions.create(**request).choices[0]
        name, arguments, finish = choice.message.function_call.name, choice.message.function_call.arguments, \
            choice.finish_reason
        assert choice.message.tool_calls is None
    assert (name, finish) == ("add", "function_call")
    jsonschema.validate(json.loads(arguments), ADD)


def test_the_token_count_of_a_request_with_tools_is_its_prompt_tokens(client, mesh):
    import httpx

    history = [*user("What is 17 plus 25?"),
               {"role": "assistant", "content": None, "function_call": {"name": "add", "arguments": '{"a": 17, "b": 25}'}},
               {"role": "function", "name": "add", "content": "42"}]
    body = {"model": SMOLLM2_ALIAS, "messages": history, "functions": [tool["function"] for tool in TOOLS],
            "max_tokens": 3, "temperature": 0}
    counted = httpx.post(f"{mesh.base_url}/v1/chat/completions/tokenizer/encode/count", json=body, timeout=60)
    assert counted.status_code == 200, counted.text
    chat = client.chat.completions.create(**body)
    assert counted.json() == {"tokenCount": chat.usage.prompt_tokens}
    # The functions are in the prompt: it counts far more than the three short turns alone.
    bare = httpx.post(f"{mesh.base_url}/v1/chat/completions/tokenizer/encode/count",
                      json={"model": SMOLLM2_ALIAS, "messages": user("What is 17 plus 25?")}, timeout=60)
    assert counted.json()["tokenCount"] > bare.json()["tokenCount"] + 100


def test_the_azure_sdk_calls_tools_and_gets_json_on_a_model_without_a_tools_template(mesh):
    from azure.ai.inference import ChatCompletionsClient
    from azure.ai.inference.models import (ChatCompletionsNamedToolChoice, ChatCompletionsNamedToolChoiceFunction,
                                           ChatCompletionsToolDefinition, FunctionDefinition,
                                           JsonSchemaFormat, UserMessage)
    from azure.core.credentials import AzureKeyCredential

    client = ChatCompletionsClient(endpoint=f"{mesh.base_url}/models", credential=AzureKeyCredential("unused"),
                                   model=SMOLLM2_ALIAS, retry_total=0)
    try:
        answer = client.complete(
            messages=[UserMessage(PROMPTS[1])], temperature=0, max_tokens=80,
            tools=[ChatCompletionsToolDefinition(function=FunctionDefinition(name="add", parameters=ADD))],
            tool_choice=ChatCompletionsNamedToolChoice(function=ChatCompletionsNamedToolChoiceFunction(name="add")))
        [call] = answer.choices[0].message.tool_calls
        assert call.function.name == "add" and answer.choices[0].finish_reason == "tool_calls"
        jsonschema.validate(json.loads(call.function.arguments), ADD)
        structured = client.complete(messages=[UserMessage(BOOKING)], temperature=0, max_tokens=200,
                                     response_format=JsonSchemaFormat(name="booking", schema=BOOK))
        jsonschema.validate(json.loads(structured.choices[0].message.content), BOOK)
    finally:
        client.close()
