from dataclasses import dataclass

from services.inference.lifetime import evictions, expired


@dataclass
class M:
    id: str
    size_bytes: int = 100
    ttl_seconds: int = 0
    last_used: float = 0.0


def test_an_idle_model_past_its_ttl_expires_and_a_busy_or_timeless_one_does_not():
    models = [M("old", ttl_seconds=10, last_used=0), M("busy", ttl_seconds=10), M("forever"),
              M("fresh", ttl_seconds=10, last_used=95)]
    assert [m.id for m in expired(models, busy={"busy"}, now=100)] == ["old"]


def test_no_budget_never_evicts():
    assert evictions([M("a", 10**12)], busy=(), incoming_bytes=10**12, budget_bytes=0) == []


def test_least_recently_used_idle_models_go_first_until_the_load_fits():
    models = [M("newest", last_used=3), M("oldest", last_used=1), M("middle", last_used=2)]
    assert [m.id for m in evictions(models, busy=(), incoming_bytes=150, budget_bytes=300)] == ["oldest", "middle"]


def test_busy_models_are_skipped_and_a_load_that_cannot_fit_says_so():
    models = [M("busy", last_used=0), M("idle", last_used=1)]
    assert [m.id for m in evictions(models, busy={"busy"}, incoming_bytes=150, budget_bytes=300)] == ["idle"]
    assert evictions(models, busy={"busy"}, incoming_bytes=250, budget_bytes=300) is None


def test_a_load_that_already_fits_evicts_nothing():
    assert evictions([M("a")], busy=(), incoming_bytes=100, budget_bytes=300) == []
