# The convergence model: t = ln(1/eps)/(p lambda) for clients without a DNS cache, the finite
# class's expected last move, cached clients' waits, the fleet's share and the epoch budget.
from __future__ import annotations

import math

import pytest

from migproxy.lab.fleet import ClientSpec
from migproxy.lab.model import (
    cache_wait,
    epoch_model,
    expected_order_time,
    fleet_time,
    move_time,
    ratio_rows,
    ratio_time,
    time_to,
    unmoved,
)
from migproxy.lab.record import NEW, OLD, ClientState, Recorder
from migproxy.lab.scenario import Policy
from tests.lab.fakes import result, scenario, specs


def test_ratio_time_is_the_formula() -> None:
    assert ratio_time(0.1, 5.0, 0.01) == pytest.approx(math.log(100) / 0.5)
    assert ratio_time(1.0, 1.0, 1 / math.e) == pytest.approx(1.0)


def test_time_to_solves_a_decreasing_fraction() -> None:
    k = 0.5
    assert time_to(lambda t: unmoved(t, 0.0, k), 0.01) == pytest.approx(
        ratio_time(1.0, k, 0.01), rel=1e-6
    )
    assert time_to(lambda t: unmoved(t, 10.0, k), 0.01) == pytest.approx(
        10 + ratio_time(1.0, k, 0.01), rel=1e-6
    )
    assert time_to(lambda t: 1.0, 0.01) is None


def test_expected_last_move_of_a_small_class_is_harmonic() -> None:
    n, k = 10, 2.0
    harmonic = sum(1 / i for i in range(1, n + 1)) / k  # E[max of n Exp(k)]
    assert expected_order_time([0.0] * n, k, n) == pytest.approx(harmonic, rel=0.05)
    assert expected_order_time([0.0] * n, k, n) < ratio_time(1.0, k, 0.01)
    assert expected_order_time([0.0], k, 1) == pytest.approx(1 / k, rel=0.05)
    assert expected_order_time([0.0] * n, k, n) == expected_order_time([0.0] * n, k, n)


def test_cache_wait() -> None:
    cached = ClientSpec(0, 1.0, 60.0, "127.1.0.1", 0.0)
    assert cache_wait(ClientState(OLD, 10.0), cached, 5, 20.0) == 50.0
    assert cache_wait(ClientState(OLD, 10.0), cached, 5, 80.0) == 0.0
    by_ttl = ClientSpec(0, 1.0, None, "127.1.0.1", 0.0)
    assert cache_wait(ClientState(OLD, 18.0), by_ttl, 5, 20.0) == 3.0
    assert cache_wait(ClientState(OLD, -math.inf), cached, 5, 20.0) == 0.0


def test_move_time_is_the_first_request_to_the_other_vip_in_the_step() -> None:
    moves = [(3.0, NEW), (4.0, OLD), (8.0, NEW)]
    assert move_time(moves, NEW, 5.0, 20.0) == 3.0
    assert move_time(moves, NEW, 0.0, 20.0) == 3.0
    assert move_time(moves, NEW, 9.0, 20.0) is None


def _moved_fleet(rates: list[float], moves_at: list[float]) -> tuple[Recorder, list[ClientSpec]]:
    fleet = list(specs(rates))
    rec = Recorder(fleet, 20)
    for i in range(len(fleet)):
        rec.lookup(0.1, i, OLD)
        rec.request(0.2, i, OLD, closed=False)
    rec.mark(5.0)
    for i, at in enumerate(moves_at):
        rec.request(at, i, NEW, closed=False)
    rec.mark(20.0)
    return rec, fleet


def test_ratio_rows_compare_each_class_with_the_model() -> None:
    s = scenario()
    rec, fleet = _moved_fleet([1.0, 2.0, 1.0, 2.0], [7.0, 6.0, 9.0, 6.5])
    rows = ratio_rows(result(s.policies[1], rec), s, fleet, 1)
    assert [(row.rate, row.clients, row.moved, row.fresh) for row in rows] == [
        (1.0, 2, 2, 0),
        (2.0, 2, 2, 0),
    ]
    slow = rows[0]
    assert slow.measured_mean == pytest.approx(3.0)  # moves 2 s and 4 s after the step
    assert slow.measured_eps == pytest.approx(4.0)  # 2 clients: the last one
    assert slow.model_mean == pytest.approx(1 / (0.5 * 1.0))
    assert ratio_rows(result(s.policies[0], rec), s, fleet, 1) == []  # not a ratio policy
    epoch = Policy("e", {"ratio": 0.5}, epoch=True)
    assert ratio_rows(result(epoch, rec), s, fleet, 1) == []  # the epoch moves them first


def test_fleet_time_of_equal_clients_is_the_formula() -> None:
    s = scenario()
    rec, fleet = _moved_fleet([2.0] * 4, [6.0] * 4)
    got = fleet_time(result(s.policies[1], rec), s, fleet, 1, 0.01)
    assert got == pytest.approx(ratio_time(0.5, 2.0, 0.01), abs=0.11)
    assert fleet_time(result(s.policies[0], rec), s, fleet, 1, 0.01) is None


def test_epoch_model_is_stale_connections_over_the_budget() -> None:
    s = scenario()
    rec, fleet = _moved_fleet([1.0, 2.0, 1.0, 2.0], [6.0] * 4)
    policy = Policy("epoch", {"max_closes_per_second": 2}, epoch=True)
    model = epoch_model(result(policy, rec), s, fleet, 1)
    assert model is not None
    assert (model.stale, model.fresh, model.budget, model.seconds) == (4, 0, 2.0, 2.0)
    unlimited = Policy("epoch", {}, epoch=True)
    model = epoch_model(result(unlimited, rec), s, fleet, 1)
    assert model is not None and model.seconds == 1.0  # the slowest client's interval
    assert epoch_model(result(s.policies[1], rec), s, fleet, 1) is None
