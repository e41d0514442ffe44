"""A model folder through onnxruntime-genai in the benchmark's own process: the raw engine that the mesh's
figures are divided by."""

from __future__ import annotations

import json
from pathlib import Path


class RawModel:
    """The model, its tokenizer and its chat template; `threads` (a services.inference.models.CpuThreads)
    sets onnxruntime's threads as the inference service would, None keeps onnxruntime-genai's default."""

    def __init__(self, folder: Path, threads=None) -> None:
        import onnxruntime_genai as og
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        from tokenizers import Tokenizer

        self.og = og
        config = og.Config(str(folder))
        if threads is not None:
            config.overlay(json.dumps({"model": {"decoder": {"session_options": threads.session_options()}}}))
        self.model = og.Model(config)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        template = (folder / "chat_template.jinja").read_text()
        self.template = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(template)

    def encode(self, text: str) -> list[int]:
        """`text` as one user turn, with the generation prompt, in token ids."""
        prompt = self.template.render(messages=[{"role": "user", "content": text}], add_generation_prompt=True)
        return self.tokenizer.encode(prompt, add_special_tokens=False).ids
