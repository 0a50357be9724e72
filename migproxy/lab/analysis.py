# From per-second counts to the lab's verdicts: the old VIP's traffic share, when it reached
# the DNS split after each weight step, and what that cost in reconnects. Pure.
#
# Convergence, defined to be robust to noise:
# - The share is taken over a centered moving window of `window` seconds (5 by default),
#   clipped to the step, so one busy or quiet second does not decide anything.
# - Tolerance: max(epsilon, 2 sigma). Epsilon is the 1% the lab aims at. Sigma is the noise of
#   the split itself: each client lands on a VIP as a weighted coin falls, so with rates r_i
#   the old share of a fleet that follows DNS perfectly still has a standard deviation of
#   sqrt(s (1 - s) sum r_i^2) / sum r_i around the target s. At 0:100 it is 0 (the target is
#   reached exactly); at 50:50 with 100 clients of 1, 5 and 20 req/s it is about 7%, and no
#   policy can bring such a fleet within 1% of 50% except by chance.
# - Converged after t: the windowed share is within tolerance from the second t after the
#   step on, for `hold` seconds in a row (5 by default). Not converged: it never was before
#   the step ended (the report then shows the share it ended at).
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from migproxy.lab.fleet import ClientSpec
from migproxy.lab.record import HELD_RETURNING, NEW, OLD, Recorder, RunResult
from migproxy.lab.scenario import Scenario

Counts = Sequence[int] | Sequence[float]


def share(old: float, new: float) -> float | None:
    """The old VIP's share of old + new (None when both are 0)."""
    total = old + new
    return old / total if total > 0 else None


def window_share(
    old: Counts, new: Counts, center: int, lo: int, hi: int, width: int
) -> float | None:
    """The old share over the `width`-second window centered on slot `center`, clipped to
    slots [lo, hi)."""
    start = max(lo, center - width // 2)
    end = min(hi, center - width // 2 + width)
    return share(sum(old[start:end]), sum(new[start:end]))


def split_sigma(target: float, rates: Sequence[float]) -> float:
    """Standard deviation of the old traffic share of clients with `rates`, each on the old
    VIP with probability `target`, independently."""
    total = sum(rates)
    if total <= 0:
        return 0.0
    return math.sqrt(target * (1 - target) * sum(r * r for r in rates)) / total


def tolerance(target: float, rates: Sequence[float], epsilon: float) -> float:
    """How close to `target` a converged share must be: max(epsilon, 2 sigma)."""
    return max(epsilon, 2 * split_sigma(target, rates))


def convergence_time(
    old: Counts,
    new: Counts,
    lo: int,
    hi: int,
    target: float,
    tol: float,
    window: int,
    hold: int,
) -> int | None:
    """Seconds after slot `lo` from which the windowed old share stays within `tol` of
    `target` for `hold` seconds; None if that never happens before slot `hi`."""
    within = []
    for center in range(lo, hi):
        value = window_share(old, new, center, lo, hi, window)
        within.append(value is not None and abs(value - target) <= tol)
    for start in range(len(within) - hold + 1):
        if all(within[start : start + hold]):
            return start
    return None


@dataclass(frozen=True, slots=True)
class StepResult:
    """One weight step of one policy's run."""

    number: int  # 1 for the first step
    at: int  # seconds from the start
    old: float  # weights from then on
    new: float
    target: float  # the DNS split: the old VIP's share of the answers
    tolerance: float
    converged: int | None  # seconds after the step, None: not within the step
    final_share: float | None  # the old traffic share over the step's last window
    reconnects: int  # connections opened during the step, first ones excluded
    moved: int  # clients whose VIP at the step's end differs from the one at its start
    returning: int  # returning reconnects the proxies counted during the step
    held: int  # injected closes the proxies held back for returning clients during the step
    errors: int

    @property
    def reconnects_per_moved(self) -> float | None:
        return self.reconnects / self.moved if self.moved else None


def step_bounds(scenario: Scenario, number: int) -> tuple[int, int]:
    """Slots [lo, hi) of step `number` (1-based): from its time to the next step or the end."""
    lo = int(scenario.weights[number].at)
    hi = int(scenario.weights[number + 1].at) if number + 1 < len(scenario.weights) else None
    return lo, hi if hi is not None else math.ceil(scenario.duration)


def moved_clients(recorder: Recorder, number: int) -> int:
    """Clients on another VIP at the end of step `number` than at its start."""
    _, start = recorder.marks[number - 1]
    _, end = recorder.marks[number]
    return sum(
        1
        for a, b in zip(start, end, strict=True)
        if a.vip is not None and b.vip is not None and a.vip != b.vip
    )


def step_result(
    result: RunResult, scenario: Scenario, specs: Sequence[ClientSpec], number: int
) -> StepResult:
    """The figures of step `number` (1-based) of one policy's run."""
    rec = result.recorder
    lo, hi = step_bounds(scenario, number)
    step = scenario.weights[number]
    target = step.old_share
    tol = tolerance(target, [spec.rate for spec in specs], scenario.epsilon)
    old, new = rec.requests[OLD], rec.requests[NEW]

    def proxies_sum(name: str) -> int:
        both = (result.proxies.series(vip, name)[lo:hi] for vip in ("old", "new"))
        return round(sum(sum(series) for series in both))

    return StepResult(
        number=number,
        at=lo,
        old=step.old,
        new=step.new,
        target=target,
        tolerance=tol,
        converged=convergence_time(old, new, lo, hi, target, tol, scenario.window, scenario.hold),
        final_share=share(sum(old[hi - scenario.window : hi]), sum(new[hi - scenario.window : hi])),
        reconnects=sum(rec.reconnects[lo:hi]),
        moved=moved_clients(rec, number) if len(rec.marks) > number else 0,
        returning=proxies_sum("migproxy_returning_reconnects_total"),
        held=proxies_sum(HELD_RETURNING),
        errors=sum(rec.errors[lo:hi]),
    )


@dataclass(frozen=True, slots=True)
class PolicySummary:
    """One policy's whole run."""

    name: str
    steps: tuple[StepResult, ...]
    reconnects: int  # over the whole run, first connections excluded
    moved: int  # summed over the steps
    returning: int
    errors: int
    error_kinds: dict[str, int]
    client_requests: tuple[int, int]  # (old, new) as the clients counted them
    proxy_requests: tuple[int, int]  # (old, new) as the proxies' /metrics counted them
    client_connects: tuple[int, int]
    proxy_connects: tuple[int, int]
    max_share_gap: float | None  # largest per-second |client - proxy| old share (5 s windows)

    @property
    def reconnects_per_moved(self) -> float | None:
        return self.reconnects / self.moved if self.moved else None


def _max_share_gap(result: RunResult, window: int) -> float | None:
    rec, proxies = result.recorder, result.proxies
    p_old = proxies.series("old", "migproxy_requests_total")
    p_new = proxies.series("new", "migproxy_requests_total")
    gaps = []
    for center in range(rec.slots):
        ours = window_share(rec.requests[OLD], rec.requests[NEW], center, 0, rec.slots, window)
        theirs = window_share(p_old, p_new, center, 0, rec.slots, window)
        if ours is not None and theirs is not None:
            gaps.append(abs(ours - theirs))
    return max(gaps) if gaps else None


def summarize(result: RunResult, scenario: Scenario, specs: Sequence[ClientSpec]) -> PolicySummary:
    """Every step of one policy's run, and its totals."""
    rec, proxies = result.recorder, result.proxies
    steps = tuple(step_result(result, scenario, specs, n) for n in range(1, len(scenario.weights)))

    def pair(name: str) -> tuple[int, int]:
        return round(proxies.total(name, "old")), round(proxies.total(name, "new"))

    return PolicySummary(
        name=result.policy.name,
        steps=steps,
        reconnects=sum(rec.reconnects),
        moved=sum(step.moved for step in steps),
        returning=round(proxies.total("migproxy_returning_reconnects_total")),
        errors=sum(rec.errors),
        error_kinds=dict(rec.error_kinds),
        client_requests=(sum(rec.requests[OLD]), sum(rec.requests[NEW])),
        proxy_requests=pair("migproxy_requests_total"),
        client_connects=(sum(rec.connects[OLD]), sum(rec.connects[NEW])),
        proxy_connects=pair("migproxy_connections_opened_total"),
        max_share_gap=_max_share_gap(result, scenario.window),
    )


def share_series(old: Counts, new: Counts) -> list[float | None]:
    """The old share of every slot (None for a slot without requests)."""
    return [share(o, n) for o, n in zip(old, new, strict=True)]


def target_series(scenario: Scenario) -> list[float]:
    """The DNS split (old share of the answers) in force during every slot."""
    out = []
    for slot in range(math.ceil(scenario.duration)):
        current = [step for step in scenario.weights if step.at <= slot][-1]
        out.append(current.old_share)
    return out
