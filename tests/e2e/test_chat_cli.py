"""`ingot chat` against the real mesh, as a user runs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def chat(mesh, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ingot.cli", "chat", "--endpoint", mesh.base_url, *args],
                          input=stdin, capture_output=True, text=True, timeout=120)


def test_one_prompt_is_answered_and_the_command_exits(mesh):
    done = chat(mesh, "Name three primary colors.", "--temperature", "0", "--max-tokens", "30")
    assert done.returncode == 0, done.stderr
    assert any(color in done.stdout.lower() for color in ("red", "blue", "yellow"))


def test_turns_read_from_stdin_keep_the_conversation(mesh):
    done = chat(mesh, "--temperature", "0", "--max-tokens", "12",
                stdin="Name a primary color.\n\nName another one.\n")
    assert done.returncode == 0, done.stderr
    answers = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(answers) >= 2


def test_a_server_error_is_reported_as_the_server_wrote_it(mesh):
    done = chat(mesh, "Hi", "--model", "no-such-model")
    assert done.returncode == 1
    assert "no-such-model" in done.stderr
