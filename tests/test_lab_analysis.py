# The lab's analysis, on synthetic counts: windowed shares, the noise-aware tolerance, the
# convergence time, and a step's reconnects and moves.
from __future__ import annotations

import math

import pytest

from migproxy.lab.analysis import (
    convergence_time,
    share,
    split_sigma,
    step_result,
    summarize,
    target_series,
    tolerance,
    window_share,
)
from migproxy.lab.record import NEW, OLD, Recorder
from tests.lab.fakes import fill, result, scenario, specs


def test_share_and_window_clipped_to_the_step() -> None:
    assert share(1, 3) == 0.25 and share(0, 0) is None
    old, new = [10, 10, 0, 0, 0], [0, 0, 10, 10, 10]
    assert window_share(old, new, 2, 0, 5, 3) == pytest.approx(1 / 3)  # slots 1..3
    assert window_share(old, new, 2, 2, 5, 3) == 0.0  # clipped: slots 2..3 only
    assert window_share(old, new, 4, 0, 5, 5) == 0.0  # slots 2..4 (the end clips it)


def test_split_sigma_is_the_noise_of_the_split_itself() -> None:
    rates = [1.0, 5.0, 20.0] * 33 + [1.0]
    assert split_sigma(0.0, rates) == 0.0 and split_sigma(1.0, rates) == 0.0
    assert split_sigma(0.5, rates) == pytest.approx(0.069, abs=0.002)
    equal = [5.0] * 100  # equal rates: the binomial sd of a share, sqrt(s(1-s)/n)
    assert split_sigma(0.5, equal) == pytest.approx(0.05)
    assert tolerance(0.0, rates, 0.01) == 0.01
    assert tolerance(0.5, rates, 0.01) == pytest.approx(2 * split_sigma(0.5, rates))


CONVERGENCE = [
    pytest.param([100, 50, 20, 5, 0, 0, 0, 0, 0, 0], 0.0, 0.01, 1, 3, 4, id="falls-to-zero"),
    pytest.param([100, 50, 0, 9, 0, 0, 0, 0, 0, 0], 0.0, 0.01, 1, 3, 4, id="noise-blip-held"),
    pytest.param([100, 50, 0, 9, 0, 0, 0, 0, 0, 0], 0.0, 0.01, 1, 1, 2, id="no-hold"),
    pytest.param([100] * 10, 0.0, 0.01, 1, 3, None, id="never"),
    pytest.param([0, 0, 0, 5, 0, 0], 0.0, 0.01, 1, 10, None, id="hold-longer-than-step"),
    # a 3 s window centered on slot 3 still holds slot 2's old requests
    pytest.param([50, 10, 10, 0, 0, 0, 0], 0.0, 0.01, 3, 2, 4, id="window-3"),
]


@pytest.mark.parametrize(("old_pct", "target", "tol", "window", "hold", "want"), CONVERGENCE)
def test_convergence_time(
    old_pct: list[int], target: float, tol: float, window: int, hold: int, want: int | None
) -> None:
    old = old_pct
    new = [100 - n for n in old_pct]
    assert convergence_time(old, new, 0, len(old), target, tol, window, hold) == want


def test_convergence_time_counts_from_the_step() -> None:
    old = [100] * 5 + [40, 0, 0, 0, 0]
    new = [0] * 5 + [60, 100, 100, 100, 100]
    assert convergence_time(old, new, 5, 10, 0.0, 0.01, 1, 2) == 1


def test_target_series() -> None:
    s = scenario(duration=8, weights=[[0, 100, 0], [3, 50, 50], [6, 0, 100]])
    assert target_series(s) == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.0, 0.0]


def test_step_result_counts_moves_reconnects_and_errors() -> None:
    s = scenario()  # 20 s, step to 0:100 at 5 s
    fleet = specs([1.0, 2.0, 1.0, 2.0])
    rec = Recorder(fleet, s.duration)
    for client in range(4):
        rec.connect(0.1, client, OLD)
        rec.request(0.2, client, OLD, closed=False)
    rec.mark(5.0)  # the step
    for client in range(3):  # three clients move, each with two reconnects
        rec.connect(6.0, client, OLD)
        rec.connect(7.0 + client, client, NEW)
        rec.request(7.5 + client, client, NEW, closed=False)
    rec.error(8.0, 3, "request: timeout")
    for slot in range(5, 20):
        fill(rec, slot, old=0 if slot >= 10 else 10, new=100)
    rec.mark(20.0)  # the end
    step = step_result(result(s.policies[1], rec), s, fleet, 1)
    assert (step.at, step.target, step.tolerance) == (5, 0.0, 0.01)
    # old requests end with slot 9; the first 5 s window centered after them is slot 12's
    assert step.converged == 7
    assert step.final_share == 0.0
    assert (step.reconnects, step.moved, step.errors) == (6, 3, 1)
    assert step.reconnects_per_moved == 2.0
    summary = summarize(result(s.policies[1], rec), s, fleet)
    assert summary.errors == 1 and summary.error_kinds == {"request: timeout": 1}
    assert summary.client_connects == (7, 3)
    assert summary.reconnects_per_moved == 2.0


def test_recorder_drops_events_outside_the_run() -> None:
    rec = Recorder(specs([1.0]), 3)
    rec.request(-0.1, 0, OLD, closed=False)
    rec.request(3.0, 0, OLD, closed=False)
    rec.request(2.9, 0, NEW, closed=True)
    assert rec.requests == [[0, 0, 0], [0, 0, 1]] and rec.closes == [0, 0, 1]
    assert rec.clients_on(NEW) == 1
    assert rec.slots == math.ceil(3)
