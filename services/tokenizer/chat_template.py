"""Chat templates rendered the way transformers' `apply_chat_template` renders them.

Templates are written and tested against transformers, so the environment copies its choices: a sandbox
(templates come with downloaded models and are untrusted code), trim_blocks and lstrip_blocks, the
loopcontrols extension, `raise_exception`, `strftime_now`, and a `tojson` that keeps non-ASCII text as is.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

# transformers appends this to the final message, renders, and cuts the prompt where it appears: the
# only way to learn where a template puts the end of the message it is asked to leave open.
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


class TemplateRenderError(ValueError):
    """The template refused these messages (its own raise_exception, or a shape it cannot handle)."""


class TemplateCompileError(ValueError):
    """The model's template is not valid Jinja."""


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # Jinja's own tojson escapes HTML characters ("<" → "\u003c"), which would change the prompt.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


@functools.cache
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


@functools.lru_cache(maxsize=64)
def compile_template(source: str) -> jinja2.Template:
    """A compiled template; the same source is compiled once, however many models share it."""
    try:
        return _environment().from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateCompileError(f"line {exc.lineno}: {exc.message}") from exc


def render(template: jinja2.Template, messages: Sequence[Mapping[str, Any]], *,
           tools: Sequence[Mapping[str, Any]] | None = None,
           special_tokens: Mapping[str, str] | None = None,
           continue_final_message: bool = False, add_generation_prompt: bool | None = None) -> str:
    """The prompt text for `messages`, ending with the assistant's generation prompt unless
    `continue_final_message` leaves the last message open for the model to go on with, or
    `add_generation_prompt` is False.
    """
    if add_generation_prompt is None:
        add_generation_prompt = not continue_final_message
    elif add_generation_prompt and continue_final_message:
        # transformers refuses the pair too: the open message would be followed by a new turn's header.
        raise TemplateRenderError("add_generation_prompt and continue_final_message cannot both be set.")
    chat = [dict(message) for message in messages]
    final_content = None
    if continue_final_message:
        final_content = chat[-1].get("content") if chat else None
        if not isinstance(final_content, str):
            raise TemplateRenderError("continue_final_message needs a final message with text content to continue.")
        chat[-1]["content"] = final_content + _CONTINUE_TAG
    variables = {**(special_tokens or {}), "messages": chat, "tools": list(tools) if tools else None,
                 "add_generation_prompt": add_generation_prompt}
    try:
        rendered = template.render(**variables)
    except jinja2.TemplateError as exc:
        # raise_exception's message is written for the caller ("Conversation roles must alternate..."): keep it.
        raise TemplateRenderError(exc.message or str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - a template doing arithmetic on a None content, and the like
        raise TemplateRenderError(f"The chat template cannot render these messages: {exc}") from exc
    if final_content is not None:
        rendered = _cut_at_continue_tag(rendered, final_content)
    return rendered


def _cut_at_continue_tag(rendered: str, final_content: str) -> str:
    tag = _CONTINUE_TAG.strip()
    if final_content.strip() not in rendered or tag not in rendered:
        raise TemplateRenderError("The chat template drops part of the final message, so it cannot be continued.")
    at = rendered.rindex(tag)
    if rendered[at:at + len(_CONTINUE_TAG)] == _CONTINUE_TAG:
        return rendered[:at]
    # The template trimmed the message's trailing space along with the tag's.
    return rendered[:at].rstrip()
