"""`ingot inference`: the inference service as its own process."""

from __future__ import annotations

import asyncio
import os

# onnxruntime-genai's official wheels send telemetry unless told not to before import.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from ingot.common import settings, telemetry  # noqa: E402
from ingot.common.channels import mesh_channel  # noqa: E402
from ingot.common.grpcserver import run_service  # noqa: E402
from ingot.common.meshtls import channel_credentials, server_credentials  # noqa: E402
from ingot.common.resolver import ModelResolver  # noqa: E402
from ingot.inference.v1 import inference_service_pb2 as pb  # noqa: E402
from ingot.inference.v1 import inference_service_pb2_grpc as pb_grpc  # noqa: E402
from ingot.registry.v1 import registry_service_pb2_grpc as registry_grpc  # noqa: E402
from services.inference.engine import Engine  # noqa: E402
from services.inference import placement  # noqa: E402
from services.inference.models import CpuThreads  # noqa: E402
from services.inference.promptcache import PromptCache  # noqa: E402
from services.inference.servicer import InferenceServicer  # noqa: E402
from services.inference.speculation import DraftPolicy  # noqa: E402
from services.inference.settings import InferenceSettings  # noqa: E402

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InferenceService"].full_name


def build(server, config: InferenceSettings):
    """Registers the servicer on `server`; returns the engine and a cleanup coroutine function."""
    engine = Engine(max_active=config.max_active_sequences, max_waiting=config.max_waiting_sequences,
                    prefill_chunk=config.prefill_chunk_tokens, max_batch=config.max_batch_size,
                    batch_window=config.batch_window_ms / 1000,
                    default_ttl=config.default_ttl_seconds,
                    memory_budget_bytes=config.memory_budget_mb * 2**20,
                    threads=CpuThreads.for_host(config.intra_op_threads, config.spin_wait),
                    prompt_cache=PromptCache(max_entries=config.prompt_cache_entries,
                                             max_bytes=config.prompt_cache_mb * 2**20,
                                             headroom=config.prompt_cache_headroom_tokens,
                                             settle=config.prompt_cache_settle),
                    drafts=DraftPolicy(config.speculative_drafts))
    engine.start()
    registry_channel = mesh_channel(config.registry_address, channel_credentials(config))
    directory = ModelResolver(registry_grpc.RegistryServiceStub(registry_channel))
    pb_grpc.add_InferenceServiceServicer_to_server(InferenceServicer(engine, directory), server)

    async def cleanup() -> None:
        await asyncio.to_thread(engine.stop)
        await registry_channel.close()

    return engine, cleanup


def main(argv: list[str] | None = None) -> int:
    import onnxruntime
    import onnxruntime_genai as og

    og.disable_telemetry_events()
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        # The CUDA build finds CUDA's libraries in the nvidia-* wheels only when told to load them.
        onnxruntime.preload_dlls()
    config = settings.load(InferenceSettings, argv, prog="ingot inference",
                           description="The inference service: chat models through onnxruntime-genai.")
    telemetry.configure("inference", config)

    async def add_servicers(server):
        engine, cleanup = build(server, config)
        placement.register(engine.loaded)
        return cleanup

    asyncio.run(run_service("inference", config, [SERVICE_NAME], add_servicers,
                            credentials=server_credentials(config)))
    return 0
