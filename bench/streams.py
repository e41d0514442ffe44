"""The chat benchmark's client: streamed chat completions over a raw SSE reader, alone or in waves.

The same prompts and the same client measure every server that speaks OpenAI's `/v1/chat/completions`
(ingot's edge, llama.cpp's `llama-server`); a `Server` names the model and any body fields that server
alone gets.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

MAX_TOKENS = 128
ANIMALS = ("dragon", "fox", "whale", "owl", "tiger", "otter", "crow", "bear", "wolf", "heron", "lynx", "mole",
           "eagle", "horse", "goat", "seal", "crane", "moth", "frog", "hare")
SKILLS = ("paint", "sing", "sail", "cook", "dance", "swim", "write poems", "build boats", "play chess", "knit")


@dataclass(frozen=True)
class Server:
    base_url: str
    model: str
    extra: dict[str, Any] = field(default_factory=dict)  # request body fields for this server only


def prompts(count: int, offset: int = 0) -> list[str]:
    return [f"Write a long story about a {ANIMALS[(offset + i) % len(ANIMALS)]} who learns to "
            f"{SKILLS[(offset + i) // len(ANIMALS) % len(SKILLS)]}." for i in range(count)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def chat_stream(client: httpx.AsyncClient, server: Server, text: str) -> dict[str, float]:
    """One streamed, greedy chat completion: time to first token, tokens, decode tokens/s, latency.

    Tokens come from the usage chunk (`stream_options.include_usage`; ingot and llama-server both send it in
    a chunk of its own, with no choices, after the last delta), read from whichever chunk carries it; a
    server that sends no usage is counted by its content deltas, one token each.
    """
    body = {"model": server.model, "messages": [{"role": "user", "content": text}], "max_tokens": MAX_TOKENS,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}, **server.extra}
    started = time.perf_counter()
    first = last = None
    usage_tokens = deltas = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage_tokens = chunk["usage"]["completion_tokens"]
            if any((choice.get("delta") or {}).get("content") for choice in chunk.get("choices") or ()):
                last = time.perf_counter()
                first = first or last
                deltas += 1
    tokens = usage_tokens or deltas
    assert first is not None and last is not None and tokens
    return {"ttft": first - started, "tokens": tokens, "decode": (tokens - 1) / max(last - first, 1e-9),
            "latency": time.perf_counter() - started}


def one(server: Server, text: str) -> dict[str, float]:
    """One request on its own."""
    async def go() -> dict[str, float]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=600) as client:
            return await chat_stream(client, server, text)

    return asyncio.run(go())


def wave(server: Server, streams: int, offset: int) -> dict[str, Any]:
    """`streams` requests started together; aggregate tokens/s over the wave's wall time."""
    async def go() -> tuple[list[dict[str, float]], float]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=600, limits=limits) as client:
            started = time.perf_counter()
            results = await asyncio.gather(*(chat_stream(client, server, text) for text in prompts(streams, offset)))
            return results, time.perf_counter() - started

    results, wall = asyncio.run(go())
    latencies = [r["latency"] for r in results]
    return {"streams": streams, "aggregate_tps": sum(r["tokens"] for r in results) / wall,
            "latency_p50": statistics.median(latencies), "latency_p95": percentile(latencies, 0.95),
            "ttft_p50": statistics.median(r["ttft"] for r in results)}


def one_stream(runs: list[dict[str, float]]) -> dict[str, float]:
    """Medians (and TTFT p95) of single-stream runs."""
    return {"decode_tps": statistics.median(r["decode"] for r in runs),
            "ttft_p50": statistics.median(r["ttft"] for r in runs),
            "ttft_p95": percentile([r["ttft"] for r in runs], 0.95)}
