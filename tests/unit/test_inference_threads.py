"""How the inference service asks onnxruntime to run a model's steps on the CPU."""

from __future__ import annotations

import os

from services.inference.models import CpuThreads, usable_cpus
from services.inference.settings import InferenceSettings


def test_zero_threads_means_one_per_cpu_this_process_may_use() -> None:
    assert CpuThreads.for_host(0).count == usable_cpus() == len(os.sched_getaffinity(0))


def test_an_explicit_thread_count_is_kept() -> None:
    assert CpuThreads.for_host(3).count == 3


def test_threads_do_not_spin_unless_asked() -> None:
    assert CpuThreads.for_host(2).session_options() == {
        "intra_op_num_threads": 2, "session.intra_op.allow_spinning": "0"}
    spinning = CpuThreads.for_host(2, spinning=True).session_options()
    assert spinning["session.intra_op.allow_spinning"] == "1"


def test_spinning_threads_stop_spinning_when_a_step_ends() -> None:
    assert CpuThreads.for_host(2, spinning=True).session_options()["session.force_spinning_stop"] == "1"


def test_the_service_defaults_to_every_cpu_spinning_within_steps() -> None:
    settings = InferenceSettings()
    assert settings.intra_op_threads == 0
    assert settings.spin_wait is True
