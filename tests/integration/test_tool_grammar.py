"""The tool-call grammars against the llguidance that onnxruntime-genai bundles: which texts each one lets
a model write, checked by steering SmolLM2 token by token through the text and seeing where the grammar's
mask overrules it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ingot.common import toolformat
from ingot.inference.v1 import inference_service_pb2 as pb
from services.inference.toolcalls import grammar

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
           "required": ["city", "unit"], "additionalProperties": False}
ADD = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
       "required": ["a", "b"], "additionalProperties": False}
FUNCTIONS = [pb.FunctionDefinition(name="get_weather", parameters_json=json.dumps(WEATHER)),
             pb.FunctionDefinition(name="add", parameters_json=json.dumps(ADD))]
PARIS = toolformat.call_text("get_weather", {"city": "Paris", "unit": "celsius"})
SUM = toolformat.call_text("add", {"a": 2, "b": 3})
BOTH = PARIS + toolformat.CALL_SEPARATOR + SUM


class Steering:
    """Drives the model through a text one token at a time; the text is allowed when every token survives
    the grammar's mask and the end-of-sequence token may follow."""

    def __init__(self, folder) -> None:
        import onnxruntime_genai as og
        from tokenizers import Tokenizer

        self.og = og
        self.model = og.Model(str(folder))
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.eos = 2
        self.prompt = self.tokenizer.encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
                                            add_special_tokens=False).ids

    def allows(self, lark: str, text: str) -> bool:
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=len(self.prompt) + len(ids) + 4, do_sample=False)
        params.set_guidance("lark_grammar", lark, False)
        generator = self.og.Generator(self.model, params)
        generator.append_tokens(self.prompt)
        for token in [*ids, self.eos]:
            logits = generator.get_logits()
            steered = np.zeros_like(logits)
            steered[0, -1, token] = 100.0
            generator.set_logits(steered)
            generator.generate_next_token()
            if token == self.eos:
                return generator.is_done()
            if int(generator.get_next_tokens()[0]) != token:
                return False
        raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def steering(smollm2_dir) -> Steering:
    return Steering(smollm2_dir)


def tools(choice, parallel=True, name="") -> pb.Tools:
    return pb.Tools(functions=FUNCTIONS, choice=choice, parallel_calls=parallel, function_name=name)


@pytest.mark.parametrize("text, allowed", [
    ("The weather is mild.", True),
    (PARIS, True),
    ("Let me check.\n" + PARIS, True),
    (BOTH, True),
    ("Let me check.\n" + BOTH, True),
    (PARIS + " Done.", False),
    ("Calling <tool_call> now", False),
    (toolformat.CALL_OPEN + '{"name": "get_weather", "arguments": {"city": "Paris"}}' + toolformat.CALL_CLOSE, False),
    (toolformat.call_text("get_weather", {"city": "Paris", "unit": "kelvin"}), False),
    (toolformat.call_text("get_time", {}), False),
], ids=["prose", "call", "prose-then-call", "two-calls", "prose-then-two-calls", "prose-after-call",
        "marker-in-prose", "missing-argument", "value-outside-enum", "unknown-function"])
def test_auto_allows_prose_or_prose_then_valid_calls(steering, text, allowed):
    assert steering.allows(grammar(tools(pb.TOOL_CHOICE_AUTO)), text) is allowed


def test_without_parallel_calls_one_call_is_the_most(steering):
    lark = grammar(tools(pb.TOOL_CHOICE_AUTO, parallel=False))
    assert steering.allows(lark, PARIS)
    assert not steering.allows(lark, BOTH)


@pytest.mark.parametrize("text, allowed", [(PARIS, True), (BOTH, True), ("Sure.", False),
                                           ("Sure.\n" + PARIS, False)])
def test_required_allows_calls_only(steering, text, allowed):
    assert steering.allows(grammar(tools(pb.TOOL_CHOICE_REQUIRED)), text) is allowed


def test_a_named_function_allows_one_call_of_it(steering):
    lark = grammar(tools(pb.TOOL_CHOICE_FUNCTION, name="add"))
    assert steering.allows(lark, SUM)
    assert not steering.allows(lark, PARIS)
    assert not steering.allows(lark, SUM + toolformat.CALL_SEPARATOR + SUM)


@pytest.mark.parametrize("text, allowed", [("The weather is mild.", True), ("<b>bold</b> <tool", True),
                                           (PARIS, False), ("Calling <tool_call> now", False)])
def test_none_allows_text_without_the_marker(steering, text, allowed):
    assert steering.allows(grammar(tools(pb.TOOL_CHOICE_NONE)), text) is allowed


def test_an_answer_schema_replaces_free_text(steering):
    lark = grammar(tools(pb.TOOL_CHOICE_AUTO), answer_schema={"type": "object", "properties": {
        "a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False})
    assert steering.allows(lark, '{"a": 1}')
    assert steering.allows(lark, PARIS)
    assert not steering.allows(lark, "The weather is mild.")
