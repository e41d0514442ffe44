"""OpenAI's context-length rule, in OpenAI's words: a prompt and its completion must fit the model's context.

The edge applies it to a raw prompt before a batch starts (so no prompt of the batch has begun); the
inference service applies it to every templated prompt. Both refuse with `context_length_exceeded`.
"""

from __future__ import annotations

from ingot.common.errors import InvalidArgument

CODE = "context_length_exceeded"


def room(prompt_tokens: int, context_length: int, *, where: str, param: str, advice: str) -> int:
    """The tokens left for a completion after the prompt; none left is a 400 on `param` (the prompt)."""
    left = context_length - prompt_tokens
    if left <= 0:
        raise InvalidArgument(f"This model's maximum context length is {context_length} tokens, but {where} has "
                              f"{prompt_tokens} tokens{advice}", param=param, code=CODE)
    return left


def too_long(prompt_tokens: int, requested: int, context_length: int, *, where: str,
             advice: str) -> InvalidArgument:
    """The refusal of a `max_tokens` that does not fit beside the prompt."""
    return InvalidArgument(
        f"This model's maximum context length is {context_length} tokens. However, you requested "
        f"{prompt_tokens + requested} tokens ({prompt_tokens} in {where}, {requested} in the completion). "
        f"{advice}", param="max_tokens", code=CODE)
