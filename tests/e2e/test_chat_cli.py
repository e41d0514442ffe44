"""`ingot chat` against the real mesh, as a user runs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import SMOLLM2_ALIAS

pytestmark = pytest.mark.e2e


def chat(mesh, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ingot.cli", "chat", "--endpoint", mesh.base_url, *args],
                          input=stdin, capture_output=True, text=True, timeout=120)


def test_one_prompt_is_answered_and_the_command_exits(mesh):
    done = chat(mesh, "Name three primary colors.", "--temperature", "0", "--max-tokens", "30")
    assert done.returncode == 0, done.stderr
    assert any(color in done.stdout.lower() for color in ("red", "blue", "yellow"))


def test_turns_read_from_stdin_keep_the_conversation(mesh, client):
    first, second = "My name is Zorblax and I live on Mars.", "Where do I live?"
    done = chat(mesh, "--temperature", "0", "--max-tokens", "20", stdin=f"{first}\n\n{second}\n")
    assert done.returncode == 0, done.stderr

    def greedy(*turns: str) -> str:
        messages = [{"role": "assistant" if i % 2 else "user", "content": turn} for i, turn in enumerate(turns)]
        return client.chat.completions.create(model=SMOLLM2_ALIAS, messages=messages, temperature=0,
                                              max_tokens=20).choices[0].message.content

    # Greedy answers are deterministic: the second one must be what the model says with the first turn
    # (question and answer) before it, and that must differ from what it says to the question alone.
    reply = greedy(first)
    followup = greedy(first, reply, second)
    assert done.stdout == f"{reply}\n{followup}\n"
    assert followup != greedy(second)


def test_a_server_error_is_reported_as_the_server_wrote_it(mesh):
    done = chat(mesh, "Hi", "--model", "no-such-model")
    assert done.returncode == 1
    assert "no-such-model" in done.stderr
