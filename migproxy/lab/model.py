# The convergence model, to compare with what the lab measures. Pure.
#
# `ratio` p: a client sending lambda requests/s gets a close with probability p at each
# response, so its connection lasts about 1/(p lambda) s. After a step that leaves its VIP out
# of the DNS answers (0:100), the share of such clients not yet moved at t is exp(-p lambda t),
# and the time until all but epsilon of them moved is  t = ln(1/epsilon) / (p lambda).
#
# Cached clients: a client whose DNS cache is still fresh at the step reconnects to the same
# VIP on every close until the cache expires, w = looked_up + cache - step after the step; it
# moves at w + Exp(p lambda). So for a cached class the model's mean move time is
# mean(w) + 1/(p lambda), and its time to epsilon solves mean_i(unmoved_i(t)) = epsilon with
# unmoved_i(t) = 1 before w_i and exp(-p lambda (t - w_i)) after. Both use each client's real
# lookup time, as recorded at the step.
#
# The fleet: client i's chance of being on the old VIP moves from x0_i (0 or 1) to the target
# s as s + (x0_i - s) unmoved_i(t) (every close after w_i re-draws its VIP from DNS), and the
# traffic share is the rate-weighted mean; its convergence time is when that is within the
# step's tolerance of s.
#
# `epoch` with a budget of B closes/s: every stale connection is closed once, at its next
# response, B per second at most: about N_stale / B s. Clients whose DNS cache is fresh at the
# step come back to the same VIP on a connection that is not stale, and stay there.
from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from migproxy.lab.fleet import ClientSpec, classes
from migproxy.lab.record import NEW, OLD, ClientState, RunResult
from migproxy.lab.scenario import Scenario

HORIZON = 3600.0  # seconds: a model time beyond this is "never"
GRID = 0.1  # seconds: resolution of the fleet model's convergence time


def ratio_time(p: float, rate: float, epsilon: float) -> float:
    """ln(1/epsilon) / (p rate): the model's time until all but epsilon of the clients of one
    rate, without a DNS cache, have moved."""
    return math.log(1 / epsilon) / (p * rate)


def unmoved(t: float, wait: float, k: float) -> float:
    """The chance that a client that can move from `wait` on, at rate k, has not by t."""
    return 1.0 if t < wait else math.exp(-k * (t - wait))


def time_to(fraction: Callable[[float], float], epsilon: float) -> float | None:
    """The t at which the decreasing `fraction(t)` falls to `epsilon` (bisection), or None
    beyond HORIZON."""
    lo, hi = 0.0, HORIZON
    if fraction(hi) > epsilon:
        return None
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fraction(mid) > epsilon else (lo, mid)
    return hi


def expected_order_time(
    waits: Sequence[float], k: float, m: int, draws: int = 2000, seed: int = 0
) -> float:
    """The mean time by which `m` of the clients moved, client i moving at waits[i] + Exp(k)
    (Monte Carlo with a fixed seed: the same answer every time).

    This is the model's t(epsilon) for a class of n clients, m = ceil((1 - epsilon) n): for
    n < 1/epsilon that is the last client's move (about H_n / k without a cache), which comes
    sooner than the large-fleet limit ln(1/epsilon) / k.
    """
    rng = random.Random(seed)
    total = 0.0
    for _ in range(draws):
        total += sorted(w + rng.expovariate(k) for w in waits)[m - 1]
    return total / draws


def cache_wait(state: ClientState, spec: ClientSpec, ttl: int, step_at: float) -> float:
    """Seconds after the step until the client's cached DNS answer expires (0: not cached)."""
    cache = spec.cache if spec.cache is not None else float(ttl)
    return max(0.0, state.looked_up + cache - step_at)


def move_time(moves: Sequence[tuple[float, int]], vip: int, lo: float, hi: float) -> float | None:
    """Seconds after `lo` of the client's first request to `vip` before `hi`."""
    for at, to in moves:
        if lo <= at < hi and to == vip:
            return at - lo
    return None


@dataclass(frozen=True, slots=True)
class ModelRow:
    """Model and measurement for one (rate, cache) class at one full step."""

    step: int
    rate: float
    cache: float | None
    clients: int  # of the class, on the VIP the step emptied
    fresh: int  # of them with a DNS cache still fresh at the step
    moved: int
    model_mean: float  # mean(cache wait) + 1/(p rate)
    measured_mean: float | None  # mean move time of those that moved
    model_eps: float  # expected time by which all but epsilon of them moved (n clients)
    measured_eps: float | None  # the move time by which all but epsilon of them had moved


def is_ratio_policy(result: RunResult) -> bool:
    """A policy the ratio model describes: ratio p > 0, no epoch (which moves clients first)."""
    return result.policy.ratio > 0 and not result.policy.epoch


def _losing_vip(target: float) -> int | None:
    return OLD if target == 0.0 else NEW if target == 1.0 else None


def ratio_rows(
    result: RunResult, scenario: Scenario, specs: Sequence[ClientSpec], number: int
) -> list[ModelRow]:
    """Per-class model rows of step `number` for a `ratio` policy; [] unless the step sends
    every answer to one VIP (only then must every client of the other move)."""
    p = result.policy.ratio
    step = scenario.weights[number]
    losing = _losing_vip(step.old_share)
    rec = result.recorder
    if not is_ratio_policy(result) or losing is None or len(rec.marks) <= number:
        return []
    _, states = rec.marks[number - 1]
    end = scenario.weights[number + 1].at if number + 1 < len(scenario.weights) else None
    hi = float(end if end is not None else scenario.duration)
    rows = []
    for rate, cache in classes(specs):
        members = [s for s in specs if s.klass == (rate, cache) and states[s.index].vip == losing]
        if members:
            waits = [cache_wait(states[s.index], s, scenario.ttl, step.at) for s in members]
            times = [move_time(rec.moves[s.index], 1 - losing, step.at, hi) for s in members]
            rows.append(_class_row(number, rate, cache, p, waits, times, scenario.epsilon))
    return rows


def _class_row(
    number: int,
    rate: float,
    cache: float | None,
    p: float,
    waits: Sequence[float],
    times: Sequence[float | None],
    epsilon: float,
) -> ModelRow:
    """Model and measurement of one class: its clients' cache waits and move times."""
    done = sorted(t for t in times if t is not None)
    need = math.ceil((1 - epsilon) * len(waits))
    k = p * rate

    return ModelRow(
        step=number,
        rate=rate,
        cache=cache,
        clients=len(waits),
        fresh=sum(1 for w in waits if w > 0),
        moved=len(done),
        model_mean=sum(waits) / len(waits) + 1 / k,
        measured_mean=sum(done) / len(done) if done else None,
        model_eps=expected_order_time(waits, k, need),
        measured_eps=done[need - 1] if len(done) >= need else None,
    )


def fleet_time(
    result: RunResult, scenario: Scenario, specs: Sequence[ClientSpec], number: int, tol: float
) -> float | None:
    """The model's time until the fleet's old traffic share is within `tol` of the DNS split
    after step `number`, for a `ratio` policy (None: not a ratio policy, or beyond HORIZON)."""
    p = result.policy.ratio
    rec = result.recorder
    if not is_ratio_policy(result) or len(rec.marks) <= number:
        return None
    step = scenario.weights[number]
    target = step.old_share
    _, states = rec.marks[number - 1]
    clients = [
        (
            s.rate,
            1.0 if states[s.index].vip == OLD else 0.0,
            cache_wait(states[s.index], s, scenario.ttl, step.at),
        )
        for s in specs
        if states[s.index].vip is not None
    ]
    total = sum(rate for rate, _, _ in clients)
    if not total:
        return None

    def gap(t: float) -> float:
        drift = sum(rate * (x0 - target) * unmoved(t, w, p * rate) for rate, x0, w in clients)
        return abs(drift / total)

    t = 0.0
    while t <= HORIZON:
        if gap(t) <= tol:
            return t
        t += GRID
    return None


@dataclass(frozen=True, slots=True)
class EpochModel:
    step: int
    stale: int  # clients on a VIP whose weight share fell, i.e. with a stale connection
    fresh: int  # of them with a DNS cache still fresh at the step: they come back and stay
    budget: float  # closes per second (0: none)
    seconds: float  # stale / budget, or one request interval of the slowest client


def epoch_model(
    result: RunResult, scenario: Scenario, specs: Sequence[ClientSpec], number: int
) -> EpochModel | None:
    """The budget model of an `epoch` policy at step `number` (None for other policies)."""
    rec = result.recorder
    if not result.policy.epoch or len(rec.marks) <= number:
        return None
    before, step = scenario.weights[number - 1], scenario.weights[number]
    losing = {OLD} if step.old_share < before.old_share else set()
    losing |= {NEW} if step.old_share > before.old_share else set()
    _, states = rec.marks[number - 1]
    stale = [s for s in specs if states[s.index].vip in losing]
    fresh = sum(1 for s in stale if cache_wait(states[s.index], s, scenario.ttl, step.at) > 0)
    raw = result.policy.close.get("max_closes_per_second", 0)
    budget = float(raw) if isinstance(raw, int | float) else 0.0
    slowest = max((1 / s.rate for s in stale), default=0.0)
    seconds = max(len(stale) / budget, slowest) if budget > 0 else slowest
    return EpochModel(number, len(stale), fresh, budget, seconds)
