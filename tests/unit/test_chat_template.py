"""Chat templates render as transformers renders them, and fail with messages a caller can act on."""

from __future__ import annotations

import re

import pytest

from services.tokenizer.chat_template import TemplateCompileError, TemplateRenderError, compile_template, render

# SmolLM2's template, as its build writes chat_template.jinja: ChatML with a default system prompt.
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
DEFAULT_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


def chatml(source: str = CHATML):
    return compile_template(source)


def test_chatml_renders_every_turn_and_ends_with_the_generation_prompt():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}]
    assert render(chatml(), messages) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
    )


def test_template_adds_its_default_system_prompt_when_none_is_given():
    assert render(chatml(), [{"role": "user", "content": "Hi"}]) == (
        DEFAULT_SYSTEM + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_add_generation_prompt_false_ends_after_the_last_message():
    prompt = render(chatml(), [{"role": "user", "content": "Hi"}], add_generation_prompt=False)
    assert prompt == DEFAULT_SYSTEM + "<|im_start|>user\nHi<|im_end|>\n"


def test_add_generation_prompt_and_continue_final_message_cannot_both_be_set():
    with pytest.raises(TemplateRenderError, match="cannot both"):
        render(chatml(), [{"role": "assistant", "content": "On"}], add_generation_prompt=True,
               continue_final_message=True)


def test_continue_final_message_leaves_the_last_message_open_without_a_generation_prompt():
    messages = [{"role": "user", "content": "Count"}, {"role": "assistant", "content": "One, two,"}]
    prompt = render(chatml(), messages, continue_final_message=True)
    assert prompt == DEFAULT_SYSTEM + "<|im_start|>user\nCount<|im_end|>\n<|im_start|>assistant\nOne, two,"


def test_continue_final_message_keeps_a_trailing_space_the_template_keeps():
    messages = [{"role": "user", "content": "Count"}, {"role": "assistant", "content": "One, two, "}]
    assert render(chatml(), messages, continue_final_message=True).endswith("assistant\nOne, two, ")


def test_continue_final_message_needs_text_to_continue():
    with pytest.raises(TemplateRenderError, match="continue"):
        render(chatml(), [{"role": "assistant", "content": None}], continue_final_message=True)


def test_continue_final_message_fails_when_the_template_drops_the_final_message():
    template = compile_template("{% for m in messages[:-1] %}{{ m['content'] }}{% endfor %}")
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    with pytest.raises(TemplateRenderError, match="cannot be continued"):
        render(template, messages, continue_final_message=True)


def test_raise_exception_surfaces_the_templates_own_message():
    template = compile_template(
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation must start with a user message') }}"
        "{% endif %}ok"
    )
    with pytest.raises(TemplateRenderError, match="^Conversation must start with a user message$"):
        render(template, [{"role": "assistant", "content": "x"}])


def test_a_none_content_the_template_cannot_concatenate_is_a_render_error():
    with pytest.raises(TemplateRenderError, match="cannot render"):
        render(chatml(), [{"role": "assistant", "content": None, "tool_calls": []}])


def test_block_tags_on_their_own_lines_leave_no_blank_lines_behind():
    template = compile_template(
        "{% for m in messages %}\n"
        "    {% if m.role == 'user' %}\n"
        "U:{{ m.content }}\n"
        "    {% endif %}\n"
        "{% endfor %}\n"
    )
    messages = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    assert render(template, messages) == "U:a\nU:b\n"


def test_loop_controls_are_available():
    template = compile_template("{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}"
                                "{{ m.content }}{% endfor %}")
    assert render(template, [{"role": "user", "content": "first"}, {"role": "user", "content": "second"}]) == "first"


def test_tojson_keeps_non_ascii_text_and_html_characters_as_written():
    template = compile_template("{{ tools | tojson }}|{{ messages[0] | tojson(indent=2) }}")
    tools = [{"type": "function", "function": {"name": "café", "description": "<b>&</b>"}}]
    rendered = render(template, [{"role": "user", "content": "naïve"}], tools=tools)
    head, tail = rendered.split("|", 1)
    assert head == '[{"type": "function", "function": {"name": "café", "description": "<b>&</b>"}}]'
    assert tail == '{\n  "role": "user",\n  "content": "naïve"\n}'


def test_tools_is_none_when_there_are_none():
    template = compile_template("{{ 'none' if tools is none else tools | length }}")
    assert render(template, [{"role": "user", "content": "x"}]) == "none"
    assert render(template, [{"role": "user", "content": "x"}], tools=[{"type": "function"}]) == "1"


def test_special_tokens_are_template_variables():
    template = compile_template("{{ bos_token }}{{ messages[0].content }}{{ eos_token }}")
    rendered = render(template, [{"role": "user", "content": "x"}],
                      special_tokens={"bos_token": "<s>", "eos_token": "</s>"})
    assert rendered == "<s>x</s>"


def test_strftime_now_gives_the_current_date():
    template = compile_template("{{ strftime_now('%Y-%m-%d') }}")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", render(template, [{"role": "user", "content": "x"}]))


def test_the_sandbox_refuses_access_to_python_internals():
    template = compile_template("{{ messages.__class__.__mro__ }}")
    with pytest.raises(TemplateRenderError):
        render(template, [{"role": "user", "content": "x"}])


def test_the_sandbox_refuses_to_mutate_the_messages():
    template = compile_template("{{ messages.append({'role': 'user'}) }}")
    with pytest.raises(TemplateRenderError):
        render(template, [{"role": "user", "content": "x"}])


def test_a_template_that_is_not_valid_jinja_is_a_compile_error():
    with pytest.raises(TemplateCompileError, match="line 1"):
        compile_template("{% for m in messages %}")


def test_rendering_leaves_the_callers_messages_untouched():
    messages = [{"role": "user", "content": "Count"}, {"role": "assistant", "content": "One"}]
    render(chatml(), messages, continue_final_message=True)
    assert messages[-1]["content"] == "One"


TOOL_TEMPLATE = (
    "{%- if tools %}{{ '<tools>' + (tools | tojson) + '</tools>\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.tool_calls %}{%- for call in message.tool_calls %}"
    "{{ '<call>' + call.function.name + ' ' + (call.function.arguments | tojson) + '</call>\n' }}"
    "{%- endfor %}{%- elif message.content is not none %}"
    "{{ message.role + ': ' + message.content + '\n' }}{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}{{ 'assistant:' }}{%- endif %}"
)


@pytest.mark.parametrize("source", [CHATML, TOOL_TEMPLATE], ids=["chatml", "tools"])
def test_rendering_matches_transformers(source):
    transformers_templates = pytest.importorskip("transformers.utils.chat_template_utils")
    messages = [
        {"role": "system", "content": "Use tools. Ünïcode <ok>"},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function",
                         "function": {"name": "weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "c1"},
    ]
    if source == CHATML:
        messages = [m for m in messages if m["content"] is not None]
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    special = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}
    expected, _ = transformers_templates.render_jinja_template(
        conversations=[messages], tools=tools, chat_template=source, add_generation_prompt=True, **special)
    assert render(compile_template(source), messages, tools=tools, special_tokens=special) == expected[0]
