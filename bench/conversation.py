"""Repeated prefixes through the whole mesh: a conversation that grows turn by turn, and many requests that
share one long system prompt (instructions and tool definitions, about 1,000 tokens).

- ingot cached: the mesh as it runs by default, its prompt cache on;
- ingot uncached: a second mesh with `INGOT_PROMPT_CACHE_ENTRIES=0`; its greedy answers must be the cached
  run's, token for token (compared as text);
- llama.cpp (PEERS=1): `llama-server` on the GGUF the default model comes from, prompt cache on (its default,
  as its users run it), the same client and requests.

Figures: time to first token per turn (the first turn and the first request of the shared prompt are full
prefills everywhere; what follows is where a prompt cache answers) and whether the answers match.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from typing import Any

import httpx

from bench.chat import MODEL
from bench.mesh import Mesh
from bench.peers import LlamaServerProcess, free_port_run, llama_server

MAX_TOKENS = 48
# 4 slots of 2,048 tokens: the chat benchmark's 16 slots of 1,024 cannot hold the shared prompt.
LLAMA_ARGS = ["-np", "4", "-c", "8192", "--cont-batching", "-t", "2", "--jinja"]
QUESTIONS = ("What is the capital of France?", "And how many people live there?",
             "Name three famous museums in that city.", "Which one is the oldest?",
             "What can I see there in one afternoon?", "Summarise our conversation in one sentence.")
SHARED_QUESTIONS = ("Find flights from Paris to Rome next Friday.", "What is the weather in Oslo?",
                    "Book a table for two at eight tonight.", "Convert 120 euros to dollars.",
                    "Remind me to call Anna tomorrow at nine.", "How long is the drive from Lyon to Nice?",
                    "Which of my meetings overlap on Monday?")
TOOLS = [
    ("search_flights", "Find flights between two airports on a date.", {"origin": "IATA code of the departure airport",
     "destination": "IATA code of the arrival airport", "date": "the day of departure, YYYY-MM-DD",
     "passengers": "how many people travel", "cabin": "economy, premium, business or first"}),
    ("get_weather", "The forecast for a place.", {"city": "the city's name", "days": "how many days ahead, 1 to 7",
     "units": "metric or imperial"}),
    ("book_table", "Reserve a table at a restaurant.", {"restaurant": "its name", "time": "HH:MM, 24 hours",
     "guests": "how many people", "notes": "allergies or wishes"}),
    ("convert_currency", "Convert an amount between currencies.", {"amount": "the amount", "source": "ISO code",
     "target": "ISO code"}),
    ("create_reminder", "Remind the user of something.", {"text": "what to remember", "when": "ISO date and time"}),
    ("route", "Driving directions between two places.", {"origin": "address or city", "destination": "address "
     "or city", "avoid": "tolls, highways or ferries"}),
    ("list_meetings", "The user's meetings on a day.", {"date": "YYYY-MM-DD", "calendar": "work or personal"}),
    ("send_email", "Send an email for the user.", {"to": "addresses", "subject": "the subject line",
     "body": "the text"}),
]
INSTRUCTIONS = (
    "You are the assistant of a travel and office agency. Answer briefly and precisely. When a request needs "
    "live data or an action, call exactly one of the tools below by answering with a JSON object that names "
    "the tool and its arguments, and nothing else. Never invent flight numbers, prices, addresses or times. "
    "If an argument is missing, ask one short question for it. Use metric units unless the user asks "
    "otherwise. Dates are in ISO format. Keep personal data private: never repeat an email address or a phone "
    "number back to the user. When the user greets you, greet back in one short sentence. ")


def system_prompt() -> str:
    tools = [{"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": {key: {"type": "string", "description": text} for key, text in
                                         arguments.items()}, "required": list(arguments)}}}
             for name, description, arguments in TOOLS]
    return INSTRUCTIONS + "\nTools:\n" + json.dumps(tools)


def ask(client: httpx.Client, model: str, messages: list[dict], extra: dict) -> tuple[float, str, int]:
    """One streamed greedy chat completion: time to first token, the answer, its prompt tokens."""
    body = {"model": model, "messages": messages, "max_tokens": MAX_TOKENS, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}, **extra}
    started = time.perf_counter()
    first, parts, prompt_tokens = None, [], 0
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                prompt_tokens = chunk["usage"]["prompt_tokens"]
            for choice in chunk.get("choices") or ():
                if content := (choice.get("delta") or {}).get("content"):
                    first = first or time.perf_counter()
                    parts.append(content)
    return (first or time.perf_counter()) - started, "".join(parts), prompt_tokens


def reused_tokens(metrics_url: str | None) -> float:
    """ingot's count of prompt tokens answered from its prompt cache so far (0 for another server)."""
    if metrics_url is None:
        return 0.0
    text = httpx.get(metrics_url, timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("ingot_prompt_cache_reused_tokens_total{"))


def measure(base_url: str, model: str, extra: dict | None = None, metrics_url: str | None = None) -> dict[str, Any]:
    extra = extra or {}
    # A connection per request: llama-server closes idle keep-alive connections under a client's feet.
    with httpx.Client(base_url=base_url, timeout=600, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        def turn(messages: list[dict]) -> dict[str, Any]:
            before = reused_tokens(metrics_url)
            ttft, answer, prompt_tokens = ask(client, model, messages, extra)
            return {"ttft": ttft, "answer": answer, "prompt_tokens": prompt_tokens,
                    "reused_tokens": reused_tokens(metrics_url) - before}

        turn([{"role": "user", "content": "Hello!"}])  # warm-up
        messages, turns = [{"role": "system", "content": "You are a helpful assistant."}], []
        for question in QUESTIONS:
            messages.append({"role": "user", "content": question})
            turns.append(turn(messages))
            messages.append({"role": "assistant", "content": turns[-1]["answer"]})
        system = system_prompt()
        shared = [turn([{"role": "system", "content": system}, {"role": "user", "content": question}])
                  for question in SHARED_QUESTIONS]
    return {"conversation": turns, "shared": shared}


def _summary(run: dict[str, Any]) -> dict[str, float]:
    turns, shared = run["conversation"], run["shared"]
    return {"conversation_first_ttft": turns[0]["ttft"],
            "conversation_later_ttft_p50": statistics.median(t["ttft"] for t in turns[1:]),
            "conversation_last_ttft": turns[-1]["ttft"], "conversation_last_prompt_tokens": turns[-1]["prompt_tokens"],
            "shared_first_ttft": shared[0]["ttft"],
            "shared_later_ttft_p50": statistics.median(s["ttft"] for s in shared[1:]),
            "shared_prompt_tokens": shared[0]["prompt_tokens"],
            "conversation_reused_tokens": sum(t["reused_tokens"] for t in turns),
            "shared_reused_tokens": sum(s["reused_tokens"] for s in shared)}


def run(config) -> dict[str, Any]:
    binary = llama_server(config.home) if os.environ.get("PEERS") == "1" else None
    runs: dict[str, dict[str, Any]] = {}
    for name, env in (("ingot cached", {}), ("ingot uncached", {"INGOT_PROMPT_CACHE_ENTRIES": "0"})):
        print(f"  measuring {name}", flush=True)
        # The registry takes this metrics port, the tokenizer the next, the inference service the one after.
        metrics_port = free_port_run(4)
        with Mesh(config.home, {**env, "INGOT_METRICS_PORT": str(metrics_port)}) as mesh:
            httpx.get(f"{mesh.base_url}/openai/load/{MODEL}", timeout=120).raise_for_status()
            runs[name] = measure(mesh.base_url, MODEL, metrics_url=f"http://127.0.0.1:{metrics_port + 2}/metrics")
    if binary:
        from ingot.modelbuild.smollm2 import find_gguf

        gguf = find_gguf()
        print(f"  measuring llama.cpp: {binary} -m {gguf.name} {' '.join(LLAMA_ARGS)} (prompt cache on)", flush=True)
        with LlamaServerProcess(binary, gguf, LLAMA_ARGS) as process:
            runs["llama.cpp"] = measure(process.base_url, gguf.stem, {"cache_prompt": True})
    identical = all(a["answer"] == b["answer"] for part in ("conversation", "shared")
                    for a, b in zip(runs["ingot cached"][part], runs["ingot uncached"][part]))
    summaries = {name: _summary(result) for name, result in runs.items()}
    _print(summaries, identical)
    return {"runs": runs, "summaries": summaries, "answers_identical": identical, "max_tokens": MAX_TOKENS}


def _print(summaries: dict[str, dict[str, float]], identical: bool) -> None:
    names = list(summaries)
    cached = summaries["ingot cached"]

    def row(label: str, key: str) -> str:
        return f"{label:<40}" + "".join(f"{summaries[n][key] * 1000:>14.0f} ms" for n in names)

    print(f"{'time to first token':<40}" + "".join(f"{n:>17}" for n in names))
    print(f"conversation, {len(QUESTIONS)} turns (last prompt {cached['conversation_last_prompt_tokens']} tokens)")
    print(row("  turn 1 (nothing to reuse)", "conversation_first_ttft"))
    print(row("  turns 2.. p50", "conversation_later_ttft_p50"))
    print(row(f"  turn {len(QUESTIONS)}", "conversation_last_ttft"))
    print(f"shared system prompt ({cached['shared_prompt_tokens']} tokens with the question), "
          f"{len(SHARED_QUESTIONS)} questions")
    print(row("  first request (nothing to reuse)", "shared_first_ttft"))
    print(row("  later requests p50", "shared_later_ttft_p50"))
    uncached = summaries["ingot uncached"]
    print(f"  ingot cached vs uncached, later requests: {uncached['shared_later_ttft_p50'] / cached['shared_later_ttft_p50']:.1f}x "
          f"sooner (shared prompt), {uncached['conversation_later_ttft_p50'] / cached['conversation_later_ttft_p50']:.1f}x "
          f"(conversation)")
    if "llama.cpp" in summaries:
        peer = summaries["llama.cpp"]
        met = cached["shared_later_ttft_p50"] <= peer["shared_later_ttft_p50"]
        print(f"  [{'met' if met else 'NOT met'}] shared prompt TTFT <= llama.cpp's (prompt cache on)")
        met = cached["conversation_later_ttft_p50"] <= peer["conversation_later_ttft_p50"]
        print(f"  [{'met' if met else 'NOT met'}] conversation TTFT <= llama.cpp's (prompt cache on)")
    print(f"  ingot's prompt cache answered {cached['conversation_reused_tokens']:.0f} prompt tokens of the "
          f"conversation and {cached['shared_reused_tokens']:.0f} of the shared-prompt requests")
    print(f"  [{'met' if identical else 'NOT met'}] greedy answers identical with and without ingot's prompt cache")
