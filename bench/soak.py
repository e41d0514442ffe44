"""Soak: N concurrent streaming chats against the mesh on loopback for M minutes, bounded by default
(4 streams, 1 minute). Reports requests served, errors (must be 0) and each service's RSS after warm-up
and at the end (target: flat)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import httpx

from bench.mesh import Mesh

MODEL = "smollm2-135m-instruct"
STREAMS = 4
SECONDS = 60
# The first requests load the model and fill caches; RSS is compared from here on.
WARMUP_S = 10
SERVICES = ("edge", "registry", "tokenizer", "inference", "embeddings")
PROMPTS = ["Tell me about dragons 🐉.", "用一句话介绍北京。", "List three colours.", "Why is the sky blue?"]


def _stream(base_url: str, index: int, until: float, served: list[int], errors: list[str]) -> None:
    with httpx.Client(base_url=base_url, timeout=120) as client:
        n = 0
        while time.monotonic() < until:
            body = {"model": MODEL, "stream": True, "max_tokens": 32,
                    "messages": [{"role": "user", "content": PROMPTS[(index + n) % len(PROMPTS)]}]}
            n += 1
            try:
                with client.stream("POST", "/v1/chat/completions", json=body) as reply:
                    lines = [line for line in reply.iter_lines() if line]
                if reply.status_code != 200 or lines[-1] != "data: [DONE]" or '"error"' in "".join(lines[-2:]):
                    errors.append(f"{reply.status_code}: {lines[-1] if lines else ''}")
                else:
                    served[index] += 1
            except httpx.HTTPError as exc:
                errors.append(repr(exc))


def _rss(mesh: Mesh) -> dict[str, float]:
    return {name: round(mesh.rss_mb(name), 1) for name in SERVICES if name in mesh.pids}


def run(config: Any) -> dict[str, Any]:
    seconds = int(getattr(config, "soak_seconds", 0) or SECONDS)
    streams = int(getattr(config, "soak_streams", 0) or STREAMS)
    with Mesh(config.home) as mesh:
        served = [0] * streams
        errors: list[str] = []
        until = time.monotonic() + seconds
        workers = [threading.Thread(target=_stream, args=(mesh.base_url, i, until, served, errors))
                   for i in range(streams)]
        for worker in workers:
            worker.start()
        time.sleep(min(WARMUP_S, seconds / 2))
        warm = _rss(mesh)
        for worker in workers:
            worker.join()
        end = _rss(mesh)
    growth = {name: round(end[name] - warm[name], 1) for name in warm}
    print(f"soak: {streams} streams for {seconds} s: {sum(served)} served, {len(errors)} errors")
    print(f"{'service':<12}{'RSS warm MB':>12}{'RSS end MB':>12}{'growth MB':>11}")
    for name in warm:
        print(f"{name:<12}{warm[name]:>12}{end[name]:>12}{growth[name]:>11}")
    return {"benchmark": "soak", "model": MODEL, "cores": os.cpu_count(), "streams": streams, "seconds": seconds,
            "served": sum(served), "errors": len(errors), "error_samples": errors[:5],
            "rss_warm_mb": warm, "rss_end_mb": end, "rss_growth_mb": growth}
