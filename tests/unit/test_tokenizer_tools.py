"""Tools in prompts: a template that renders tools keeps them; one that ignores them gets ingot's format."""

from __future__ import annotations

import json

from ingot.common import toolformat
from services.tokenizer import tools
from services.tokenizer.chat_template import compile_template, render
from tests.unit.test_chat_template import CHATML

# Qwen 2.5's way of rendering tools, cut down to what the detection and the rendering need.
TOOLS_AWARE = (
    "{% if tools %}<|im_start|>system\n# Tools\n{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}<|im_end|>\n"
    "{% endif %}{% for message in messages %}<|im_start|>{{ message.role }}\n"
    "{% if message.tool_calls %}{% for call in message.tool_calls %}<tool_call>\n"
    "{{ call.function | tojson }}\n</tool_call>{% endfor %}{% else %}{{ message.content }}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}


def test_a_template_that_renders_tools_is_detected_and_one_that_ignores_them_is_not():
    assert tools.renders_tools(compile_template(TOOLS_AWARE))
    assert not tools.renders_tools(compile_template(CHATML))


def test_tools_go_into_a_new_system_message_with_the_call_format():
    chat = tools.inline([{"role": "user", "content": "Weather in Oslo?"}], [WEATHER])
    assert [m["role"] for m in chat] == ["system", "user"]
    system = chat[0]["content"]
    assert toolformat.dumps(WEATHER) in system
    assert "<tool_call>\n{\"name\": <function-name>, \"arguments\": <arguments-json-object>}\n</tool_call>" in system


def test_tools_join_an_existing_system_message():
    chat = tools.inline([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], [WEATHER])
    assert chat[0]["content"].startswith("Be brief.\n\n# Tools\n")
    assert len(chat) == 2


def test_calls_and_results_in_the_history_become_text_in_the_call_format():
    history = [{"role": "user", "content": "Weather in Oslo and Rome?"},
               {"role": "assistant", "content": None, "tool_calls": [CALL, {**CALL, "id": "call_2", "function": {
                   "name": "get_weather", "arguments": {"city": "Rome"}}}]},
               {"role": "tool", "content": "-3 C", "tool_call_id": "call_1"},
               {"role": "tool", "content": "14 C", "tool_call_id": "call_2"}]
    chat = tools.inline(history, None)
    assert chat[1] == {"role": "assistant", "content": toolformat.call_text("get_weather", {"city": "Oslo"}) + "\n"
                       + toolformat.call_text("get_weather", {"city": "Rome"})}
    assert chat[2] == {"role": "user", "content": "<tool_response>\n-3 C\n</tool_response>\n"
                                                  "<tool_response>\n14 C\n</tool_response>"}
    assert len(chat) == 3
    # ChatML renders every turn now, where `None + str` failed before.
    prompt = render(compile_template(CHATML), chat)
    assert '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}' in prompt


def test_an_assistant_turn_keeps_its_text_before_its_calls():
    chat = tools.inline([{"role": "assistant", "content": "Checking.", "tool_calls": [CALL]}], None)
    assert chat[0]["content"] == "Checking.\n" + toolformat.call_text("get_weather", {"city": "Oslo"})


def test_only_conversations_with_tools_or_tool_turns_are_rewritten():
    assert not tools.needs_inlining([{"role": "user", "content": "Hi"}], None)
    assert tools.needs_inlining([{"role": "user", "content": "Hi"}], [WEATHER])
    assert tools.needs_inlining([{"role": "tool", "content": "1", "tool_call_id": "a"}], None)


def test_the_call_format_is_what_the_inference_grammar_enforces():
    text = toolformat.call_text("f", {"a": [1, 2], "b": "é"})
    assert text == '<tool_call>\n{"name": "f", "arguments": {"a": [1, 2], "b": "é"}}\n</tool_call>'
    assert json.loads(text[len(toolformat.CALL_OPEN):-len(toolformat.CALL_CLOSE)])["arguments"]["b"] == "é"
