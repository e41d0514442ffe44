"""A chat model as the engine thread holds it: onnxruntime-genai's Model and Tokenizer plus what the
registry said about it."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import onnxruntime
import onnxruntime_genai as og

from ingot.common.errors import FailedPrecondition, InvalidArgument
from ingot.registry.v1 import registry_service_pb2 as registry_pb
from services.inference.tokenbytes import load_token_bytes


@dataclass
class LoadedModel:
    info: registry_pb.ModelInfo
    model: og.Model
    tokenizer: og.Tokenizer
    eos_token_ids: frozenset[int]
    # Control tokens (<|im_start|>, ...): onnxruntime-genai's TokenizerStream would return their literal
    # text, which must never reach a client's content.
    special_token_ids: frozenset[int]
    vocab_size: int
    # Right-pads the shorter prompts of a batch.
    pad_token_id: int
    # Each token's UTF-8 bytes, for logprobs.
    token_bytes: list[bytes]
    execution_provider: str = "cpu"
    # Idle seconds before the model unloads; 0 keeps it loaded.
    ttl_seconds: int = 0
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    last_used_at: float = field(default_factory=time.time)
    # Written by the engine thread only; read by the event loop for ListLoadedModels.
    active_sequences: int = 0
    # Generators stepping this model's sequences; fewer than active_sequences means sequences are batched.
    batches: int = 0
    generated_tokens: int = 0
    # What one token's keys and values take in a generator's KV cache, which is allocated for max_length.
    kv_bytes_per_token: int = 0
    # Whether a token's logits and KV come out the same however many tokens a step computes. Not with int8
    # activations: onnxruntime's one-row kernel rounds differently from its many-row one (logits differ
    # by up to ~0.5; any step of 2 or more tokens agrees bit for bit with any other). See steps_agree.
    steps_agree: bool = True

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def size_bytes(self) -> int:
        return self.info.size_bytes

    def touch(self) -> None:
        self.last_used, self.last_used_at = time.monotonic(), time.time()


@dataclass(frozen=True)
class CpuThreads:
    """How onnxruntime runs a model's steps on the CPU. Its default is one thread, which leaves every other
    core idle; measured on 2 cores with SmolLM2, 2 threads step a batch of 8 in half the time. A step runs
    a few hundred small parallel sections; threads that sleep between them pay a wake-up each, which
    spinning saves (one stream 66 -> 94 tokens/s on 2 cores). They stop spinning the moment a step
    ends, so the cores are free between steps for the edge, the tokenizer and the gRPC loop."""

    count: int
    spinning: bool = False

    @classmethod
    def for_host(cls, count: int = 0, spinning: bool = False) -> CpuThreads:
        """`count` threads, or one per CPU this process may run on when 0."""
        return cls(count or usable_cpus(), spinning)

    def session_options(self) -> dict[str, object]:
        if not self.spinning:
            return {"intra_op_num_threads": self.count, "session.intra_op.allow_spinning": "0"}
        # Spinning pays between the ~180 parallel sections of one step; between steps the engine thread,
        # the gRPC loop and the other services need the cores, so the threads stop the moment a step ends.
        return {"intra_op_num_threads": self.count, "session.intra_op.allow_spinning": "1",
                "session.force_spinning_stop": "1"}


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# Foundry Local's names for execution providers, and onnxruntime's. onnxruntime-genai's own is_*_available()
# answers True for providers its build cannot load (QNN, WebGPU on Linux), so onnxruntime decides.
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "dml": "DmlExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "webgpu": "WebGpuExecutionProvider",
}


def available_providers() -> list[str]:
    present = set(onnxruntime.get_available_providers())
    return [name for name, ort_name in PROVIDERS.items() if ort_name in present]


def check_provider(name: str) -> None:
    if name and name not in available_providers():
        known = "" if name in PROVIDERS else f" ({name!r} is not an execution provider ingot knows)"
        raise InvalidArgument(
            f"The execution provider '{name}' is not available on this host{known}; available: "
            f"{', '.join(available_providers())}.", param="ep")


def _configured_provider(genai: dict) -> str:
    options = genai["model"]["decoder"].get("session_options", {}).get("provider_options", [])
    names = [name for entry in options for name in entry]
    return names[0].lower() if names else "cpu"


def load(info: registry_pb.ModelInfo, *, execution_provider: str = "", device_id: int = 0,
         ttl_seconds: int = 0, threads: CpuThreads | None = None) -> LoadedModel:
    """Loads the model folder the registry named. Runs on the engine thread (og.Model holds the GIL)."""
    check_provider(execution_provider)
    path = Path(info.path)
    config_file = path / "genai_config.json"
    if not config_file.is_file():
        raise FailedPrecondition(f"The model '{info.id}' has no genai_config.json in {path}.", param="model")
    genai = json.loads(config_file.read_text())
    vocab_size = int(genai["model"]["vocab_size"])
    config = og.Config(str(path))
    threads = threads or CpuThreads.for_host()
    config.overlay(json.dumps({"model": {"decoder": {"session_options": threads.session_options()}}}))
    if execution_provider:
        config.clear_providers()
        if execution_provider != "cpu":
            config.append_provider(execution_provider)
    provider = execution_provider or _configured_provider(genai)
    if provider == "cuda":
        config.set_provider_option("cuda", "device_id", str(device_id))
    model = og.Model(config)
    tokenizer = og.Tokenizer(model)
    return LoadedModel(
        info=info,
        model=model,
        tokenizer=tokenizer,
        eos_token_ids=frozenset(int(t) for t in tokenizer.eos_token_ids),
        special_token_ids=_special_token_ids(path / "tokenizer.json"),
        vocab_size=vocab_size,
        pad_token_id=int(genai["model"].get("pad_token_id", min(tokenizer.eos_token_ids))),
        token_bytes=load_token_bytes(path / "tokenizer.json", vocab_size),
        execution_provider=provider,
        ttl_seconds=ttl_seconds,
        kv_bytes_per_token=_kv_bytes_per_token(genai["model"]["decoder"], provider),
        steps_agree=steps_agree(path),
    )


def steps_agree(path: Path) -> bool:
    """Whether one-token steps (decoding) compute as multi-token steps (prefill, a batch, drafts) do. A GGUF
    import records its arithmetic; int8 activations are the one known not to. Other models record nothing
    and are taken to agree (true of onnxruntime-genai's fp32 builds to within 1e-4; its int4 and int8 CPU
    builds quantise activations too and may not)."""
    try:
        manifest = json.loads((path / "inference_model.json").read_text())
    except (OSError, ValueError):
        return True
    return (manifest.get("Import") or {}).get("accuracy") != "int8"


def _kv_bytes_per_token(decoder: dict, provider: str) -> int:
    # onnxruntime-genai keeps the KV cache in the model's activation type: fp32 on the CPU, fp16 on a GPU.
    element = 4 if provider == "cpu" else 2
    heads = decoder.get("num_key_value_heads") or decoder.get("num_attention_heads", 0)
    return 2 * int(decoder.get("num_hidden_layers", 0)) * int(heads) * int(decoder.get("head_size", 0)) * element


def _special_token_ids(tokenizer_file: Path) -> frozenset[int]:
    if not tokenizer_file.is_file():
        return frozenset()
    added = json.loads(tokenizer_file.read_text()).get("added_tokens", [])
    return frozenset(int(token["id"]) for token in added if token.get("special"))
