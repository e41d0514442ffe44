"""Embeddings per second through the edge (HTTP → edge → embeddings service → onnxruntime) against the raw
onnxruntime session on the same model folder, measured in the same run and reported as ratios.

The raw path is what a program would do with no server: tokenize, pad, run the session (with the session
options the service uses, so the ratio shows what serving costs, not a tuning difference). The edge path is
an HTTP client posting to /v1/embeddings with `encoding_format: base64` (what the `openai` SDK asks for by
default) and decoding the vectors. Each case alternates the two paths for several rounds and reports the
median of the rounds' ratios, so noise from other work on the machine hits both alike.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.mesh import Mesh

MODEL = "all-MiniLM-L6-v2-generic-cpu:1"
FOLDER = Path("models/sentence-transformers/all-MiniLM-L6-v2-generic-cpu-1")
BATCHES = (1, 8, 64)
# Single-sentence requests from this many clients at once: the service batches them together.
CONCURRENT_CLIENTS = 16
WORDS = ("the model reads a sentence and returns a vector that places similar meanings close together while "
         "unrelated text lands far away so search engines rank passages by distance to the query cats dogs "
         "rivers mountains markets music engines kitchens gardens history physics football weather").split()


def corpus(size: int = 512, seed: int = 7) -> list[str]:
    """Fixed sentences of 4 to 48 words, so batches mix short and long rows as real traffic does."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 48))).capitalize() + "." for _ in range(size)]


class Raw:
    """The baseline: the same model folder through tokenizers and an onnxruntime session, in this process."""

    def __init__(self, folder: Path) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        config = json.loads((folder / "embeddings_config.json").read_text())
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(config["max_sequence_length"])
        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(folder / "model.onnx"), options,
                                                    providers=["CPUExecutionProvider"])

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = [e.ids for e in self.tokenizer.encode_batch(texts)]
        ids = np.zeros((len(rows), max(map(len, rows))), dtype=np.int64)
        for index, row in enumerate(rows):
            ids[index, :len(row)] = row
        feeds = {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64), "token_type_ids": np.zeros_like(ids)}
        return self.session.run(None, feeds)[0]


def edge_embed(client: httpx.Client, texts: list[str]) -> np.ndarray:
    response = client.post("/v1/embeddings", json={"model": MODEL, "input": texts, "encoding_format": "base64"})
    response.raise_for_status()
    return np.stack([np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
                     for item in response.json()["data"]])


def rate(call: Callable[[list[str]], Any], sentences: list[str], batch: int, seconds: float) -> float:
    """Embeddings per second of `call` on consecutive slices of the corpus for `seconds`."""
    done = start = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        texts = [sentences[(start + i) % len(sentences)] for i in range(batch)]
        call(texts)
        done += batch
        start += batch
    return done / (time.perf_counter() - began)


def concurrent_rate(base_url: str, sentences: list[str], clients: int, seconds: float) -> float:
    """Embeddings per second with `clients` single-sentence requests in flight at all times.

    One asyncio loop drives them all, so the client's own cost stays small next to the edge's.
    """
    import aiohttp

    async def main() -> float:
        done = 0
        stop = time.perf_counter() + seconds
        async with aiohttp.ClientSession(base_url) as session:
            async def client_loop(slot: int) -> None:
                nonlocal done
                position = slot
                while time.perf_counter() < stop:
                    text = sentences[position % len(sentences)]
                    body = {"model": MODEL, "input": [text], "encoding_format": "base64"}
                    async with session.post("/v1/embeddings", json=body) as response:
                        response.raise_for_status()
                        await response.read()
                    done += 1
                    position += clients

            began = time.perf_counter()
            await asyncio.gather(*(client_loop(slot) for slot in range(clients)))
            return done / (time.perf_counter() - began)

    return asyncio.run(main())


def run(config: Any) -> dict[str, Any]:
    sentences = corpus()
    folder = config.home / FOLDER
    if not (folder / "model.onnx").is_file():
        raise SystemExit(f"{folder} is missing: run `make setup` first")
    raw = Raw(folder)
    cases: list[dict[str, Any]] = []
    with Mesh(config.home) as mesh, httpx.Client(base_url=mesh.base_url, timeout=120) as client:
        # Same vectors both ways, or the comparison means nothing; this also loads the model in the service.
        check = sentences[:8]
        if np.abs(edge_embed(client, check) - raw.embed(check)).max() > 1e-4:
            raise RuntimeError("the edge and the raw session disagree on the same sentences")
        for batch in BATCHES:
            cases.append(_measure(f"{batch}", config,
                                  lambda batch=batch: rate(raw.embed, sentences, batch, config.seconds),
                                  lambda batch=batch: rate(lambda texts: edge_embed(client, texts), sentences, batch,
                                                           config.seconds)))
        cases.append(_measure(f"1 x {CONCURRENT_CLIENTS} clients", config,
                              lambda: rate(raw.embed, sentences, 1, config.seconds),
                              lambda: concurrent_rate(mesh.base_url, sentences, CONCURRENT_CLIENTS, config.seconds)))
    return {"benchmark": "embeddings", "model": MODEL, "cores": os.cpu_count(), "rounds": config.rounds,
            "seconds_per_round": config.seconds, "edge_encoding": "base64", "cases": cases}


def _measure(batch: str, config: Any, raw: Callable[[], float], edge: Callable[[], float]) -> dict[str, Any]:
    """Both paths in adjacent slots of each round, first one then the other, alternating which goes first,
    so that load from elsewhere on the machine drifts over both alike; the ratio is the median of the rounds'."""
    raw_rates, edge_rates = [], []
    for round_index in range(config.rounds):
        if round_index % 2:
            edge_rates.append(edge())
            raw_rates.append(raw())
        else:
            raw_rates.append(raw())
            edge_rates.append(edge())
    ratios = [e / r for e, r in zip(edge_rates, raw_rates, strict=True)]
    case = {"batch": batch, "raw_per_s": round(statistics.median(raw_rates), 1),
            "edge_per_s": round(statistics.median(edge_rates), 1), "ratio": round(statistics.median(ratios), 3),
            "raw_rounds": [round(r, 1) for r in raw_rates], "edge_rounds": [round(r, 1) for r in edge_rates]}
    _print(case)
    return case


def _print(case: dict[str, Any]) -> None:
    if not getattr(_print, "header", False):
        print(f"{'batch':>16} {'raw onnxruntime /s':>20} {'through edge /s':>17} {'edge/raw':>9}", flush=True)
        _print.header = True  # type: ignore[attr-defined]
    print(f"{case['batch']:>16} {case['raw_per_s']:>20.1f} {case['edge_per_s']:>17.1f} {case['ratio']:>9.2f}",
          flush=True)
