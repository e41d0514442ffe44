"""SmolLM2's GGUF run in fp32 by transformers: the reference the default chat model's quality is measured against.

The reference is independent of the importer: transformers reads the GGUF, dequantises it (undoing llama.cpp's
q/k permutation itself) and runs its own Llama in fp32. Every position of every prompt in PROMPTS is a
teacher-forced next-token prediction (1096 in all). The quality test
(tests/integration/test_modelbuild_smollm2_quality.py) and `python -m bench quality` both score against it.

transformers takes about 20 s to load the GGUF, so `reference(home)` caches its answer under
$INGOT_HOME/cache/gguf-reference, keyed by the GGUF's digest, the prompts and the library versions. The cache
keeps each position's 1024 most likely tokens (keys ids{i}, top_index{i}, top_logp{i}); `kl_top_k` computes
the KL over those with the rest lumped into one outcome, which can only understate it by the KL inside a tail
of (for this model) under 1e-4 mass. torch and transformers (the `build` extra) are imported only to compute
a missing reference, in a child process.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingot.modelbuild.ggufimport import file_digest
from ingot.modelbuild.smollm2 import find_gguf

TOP_K = 1024
SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


def chat(*turns: str) -> str:
    roles = ("user", "assistant") * len(turns)
    return SYSTEM + "".join(f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in zip(roles, turns))


PROMPTS = [
    chat("What is the capital of France?",
         "The capital of France is Paris. It is known for the Eiffel Tower, the Louvre and its cafés."),
    chat("Name three primary colors.",
         "The three primary colors are red, blue and yellow. Mixing them gives green, orange and purple."),
    chat("Give me three tips for staying healthy.",
         "1. Eat a balanced diet with plenty of fruit and vegetables.\n2. Exercise regularly, at least thirty "
         "minutes a day.\n3. Get enough sleep every night."),
    chat("Translate 'good morning' into Spanish and German.",
         "In Spanish, 'good morning' is 'buenos días'. In German, it is 'guten Morgen'."),
    chat("What is 12 times 12?", "12 times 12 is 144.", "And 13 times 13?", "13 times 13 is 169."),
    chat("Write a haiku about the sea.", "Waves fold into foam,\nsalt wind carries gull voices,\nthe tide "
         "breathes and goes."),
    chat("Explain what a black hole is in two sentences.",
         "A black hole is a region of space where gravity is so strong that nothing, not even light, can "
         "escape. It forms when a massive star collapses under its own weight."),
    chat("How do I reverse a list in Python?",
         "You can use slicing: `my_list[::-1]` returns a reversed copy, while `my_list.reverse()` reverses "
         "the list in place."),
    chat("Summarise the plot of Romeo and Juliet.",
         "Two young lovers from feuding families in Verona marry in secret. A chain of misunderstandings "
         "leads both of them to take their own lives, which finally reconciles their families."),
    chat("What should I pack for a weekend hiking trip?",
         "Pack sturdy boots, layered clothing, a rain jacket, a map, water, snacks, a first-aid kit, "
         "sunscreen and a headlamp."),
    "Once upon a time, in a land far away, there lived a dragon who wanted to learn to paint. Every morning "
    "she flew to the village and watched the old painter at work, mixing colors on a wooden board.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n\n"
    "print([fibonacci(i) for i in range(10)])\n",
    "The mitochondria is the powerhouse of the cell. It produces energy in the form of ATP through a "
    "process called cellular respiration, which uses oxygen and glucose.",
    "In 1969, Neil Armstrong and Buzz Aldrin landed on the Moon during the Apollo 11 mission, while "
    "Michael Collins orbited above in the command module.",
    "Water boils at 100 degrees Celsius at sea level. At higher altitudes, the air pressure is lower, so "
    "water boils at a lower temperature, which makes cooking pasta take longer.",
    "Photosynthesis is the process by which green plants use sunlight, water and carbon dioxide to make "
    "glucose and release oxygen into the air.",
    "The quick brown fox jumps over the lazy dog. This sentence contains every letter of the English "
    "alphabet at least once, which is why typists use it for practice.",
    "SELECT name, COUNT(*) AS orders FROM customers JOIN orders ON customers.id = orders.customer_id "
    "GROUP BY name ORDER BY orders DESC LIMIT 10;",
    "Dear team,\n\nThank you all for your hard work this quarter. We shipped the new release on time and "
    "our customers have noticed. Let's celebrate on Friday.\n\nBest regards,\nAnna",
    "The French Revolution began in 1789 and ended in the late 1790s with the rise of Napoleon. It "
    "transformed French society, abolishing feudal privileges and proclaiming the rights of man.",
]


def _reference(gguf: str, prompts: list[str], top_k: int) -> dict[str, np.ndarray]:
    """In a child process (torch keeps its memory): transformers' fp32 logits, reduced to the top k."""
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(gguf)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    out: dict[str, np.ndarray] = {}
    for i, text in enumerate(prompts):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
        top = torch.topk(logp, top_k, dim=-1)
        out[f"ids{i}"] = np.array(ids, dtype=np.int64)
        out[f"top_index{i}"] = top.indices.numpy().astype(np.int32)
        out[f"top_logp{i}"] = top.values.numpy()
    return out


def cache_path(ingot_home: Path, gguf: Path) -> Path:
    # The versions are read from the installed distributions (the same strings as torch.__version__ and
    # transformers.__version__), so finding a cached reference does not import torch.
    try:
        versions = [importlib.metadata.version("transformers"), importlib.metadata.version("torch")]
    except importlib.metadata.PackageNotFoundError as e:
        raise RuntimeError(f"the fp32 reference needs the `build` extra (torch, transformers): {e.name} is not "
                           "installed") from e
    key = hashlib.sha256(json.dumps([file_digest(gguf), *versions, TOP_K, PROMPTS]).encode()).hexdigest()[:32]
    return Path(ingot_home) / "cache" / "gguf-reference" / f"smollm2-{key}.npz"


def reference(ingot_home: Path) -> dict[str, np.ndarray]:
    """The cached reference for the installed GGUF, computed (about 20 s, needs torch) when missing."""
    gguf = find_gguf()
    cache = cache_path(ingot_home, gguf)
    if cache.is_file():
        with np.load(cache) as data:
            return dict(data)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        data = pool.submit(_reference, str(gguf), PROMPTS, TOP_K).result()
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".partial.npz")
    np.savez_compressed(partial, **data)
    partial.replace(cache)
    return data


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def kl_top_k(ref_index: np.ndarray, ref_logp: np.ndarray, logq: np.ndarray) -> np.ndarray:
    """KL(p ‖ q) per position over the reference's top k tokens, the remaining tokens lumped as one."""
    p = np.exp(ref_logp)
    logq_top = np.take_along_axis(logq, ref_index.astype(np.int64), axis=-1)
    p_rest = np.clip(1.0 - p.sum(-1), 0.0, 1.0)
    q_rest = np.clip(1.0 - np.exp(logq_top).sum(-1), 1e-300, 1.0)
    rest = np.where(p_rest > 0, p_rest * (np.log(np.maximum(p_rest, 1e-300)) - np.log(q_rest)), 0.0)
    return (p * (ref_logp - logq_top)).sum(-1) + rest


@dataclass(frozen=True)
class Agreement:
    agree: int
    positions: int
    kls: tuple[float, ...]

    @property
    def top1(self) -> float:
        return self.agree / self.positions

    @property
    def mean_kl(self) -> float:
        return float(np.mean(self.kls))


def agreement(data: dict[str, np.ndarray], logits: Callable[[list[int]], np.ndarray]) -> Agreement:
    """Top-1 agreement and per-position KL against the reference of a model whose `logits(ids)` gives the
    `[len(ids), vocab]` next-token logits of every position."""
    agree = positions = 0
    kls: list[float] = []
    for i in range(prompt_count(data)):
        ids = data[f"ids{i}"].tolist()
        logq = log_softmax(logits(ids))
        agree += int((logq.argmax(-1) == data[f"top_index{i}"][:, 0]).sum())
        positions += len(ids)
        kls.extend(kl_top_k(data[f"top_index{i}"], data[f"top_logp{i}"], logq).tolist())
    return Agreement(agree, positions, tuple(kls))


def prompt_count(data: dict[str, np.ndarray]) -> int:
    return sum(1 for key in data if key.startswith("ids"))
