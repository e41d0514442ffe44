"""The engine's admission policy: batch windows, prompt cache hits that run alone, when to settle."""

from __future__ import annotations

import pytest

from services.inference import admission


def test_a_lone_request_waits_one_window_from_its_arrival():
    assert admission.hold([10.0], 10.002, window=0.005, max_batch=8) == pytest.approx(0.003)
    assert admission.hold([10.0], 10.006, window=0.005, max_batch=8) == 0.0


def test_a_burst_waits_for_arrivals_to_pause_but_never_past_its_cap():
    arrivals = [10.0, 10.004, 10.008, 10.012, 10.016]
    # Arrivals keep coming: the window would restart from the latest, but the cap (4 windows) ends it.
    assert admission.hold(arrivals, 10.017, window=0.005, max_batch=8) == pytest.approx(0.003)
    assert admission.hold(arrivals, 10.021, window=0.005, max_batch=8) == 0.0


def test_a_full_batch_or_no_window_starts_at_once():
    assert admission.hold([10.0] * 8, 10.0, window=0.005, max_batch=8) == 0.0
    assert admission.hold([10.0], 10.0, window=0.0, max_batch=8) == 0.0


def test_a_long_reuse_runs_alone_and_a_short_one_only_when_nothing_would_share_its_batch():
    assert admission.runs_alone(admission.ALONE_REUSE_TOKENS, batchable=True, crowded=True)
    assert not admission.runs_alone(40, batchable=True, crowded=True)
    assert admission.runs_alone(40, batchable=True, crowded=False)
    assert admission.runs_alone(40, batchable=False, crowded=True)


def test_settling_waits_for_a_pause_and_never_while_busy_or_with_nothing_to_settle():
    assert admission.settle_in(10.1, 10.0, busy=False, unsettled=True) == pytest.approx(admission.SETTLE_AFTER_S - 0.1)
    assert admission.settle_in(11.0, 10.0, busy=False, unsettled=True) == 0.0
    assert admission.settle_in(11.0, 10.0, busy=True, unsettled=True) is None
    assert admission.settle_in(11.0, 10.0, busy=False, unsettled=False) is None
