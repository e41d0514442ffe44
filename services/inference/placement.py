"""What this inference replica holds in memory, as metrics: with several replicas behind one address each
loads models on its own, and the scrape of each replica (its instance label) says which holds what."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from ingot.common import metrics
from services.inference.models import LoadedModel


class LoadedModelsCollector(Collector):
    """Read at each scrape, so it can never disagree with the engine."""

    def __init__(self, loaded: Callable[[], Sequence[LoadedModel]]) -> None:
        self._loaded = loaded

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("ingot_inference_model_loaded", "models this inference replica holds in "
                                   "memory (1 each), by model and execution provider",
                                   labels=["model", "execution_provider"])
        for model in self._loaded():
            family.add_metric([model.info.id, model.execution_provider or "cpu"], 1)
        yield family


def register(loaded: Callable[[], Sequence[LoadedModel]]) -> None:
    metrics.LOADED_MODELS.set_function(lambda: len(loaded()))
    REGISTRY.register(LoadedModelsCollector(loaded))
