# Pure tests of migproxy.policy.health: sequences of check outcomes -> transitions under rise and
# fall thresholds, and the rule that discards a timeout when the proxy itself was late.
from __future__ import annotations

import pytest

from migproxy.policy.health import LATE_FRACTION, HealthState, is_inconclusive

OK, FAIL = True, False
EJECTED, READMITTED = False, True


def transitions(state: HealthState, outcomes: list[bool]) -> list[tuple[int, bool]]:
    """(index of the outcome, new state) for every outcome that changed the state."""
    out = []
    for index, ok in enumerate(outcomes):
        change = state.record(ok)
        if change is not None:
            out.append((index, change))
    return out


@pytest.mark.parametrize(
    ("rise", "fall", "outcomes", "expected"),
    [
        # Starts healthy: successes alone change nothing.
        pytest.param(2, 3, [OK] * 5, [], id="all-ok"),
        pytest.param(2, 3, [], [], id="nothing-recorded"),
        # Ejected exactly at the fall-th consecutive failure, and only once.
        pytest.param(2, 3, [FAIL] * 3, [(2, EJECTED)], id="fall-3"),
        pytest.param(2, 3, [FAIL] * 6, [(2, EJECTED)], id="ejected-once"),
        pytest.param(2, 1, [FAIL], [(0, EJECTED)], id="fall-1-single-failure-ejects"),
        # A single failure never ejects with fall >= 2, wherever it falls.
        pytest.param(2, 2, [FAIL], [], id="single-failure-fall-2"),
        pytest.param(2, 2, [OK, OK, FAIL, OK, OK], [], id="single-failure-between-ok"),
        pytest.param(2, 3, [FAIL, FAIL, OK, FAIL, FAIL, OK], [], id="ok-resets-failures"),
        # Flapping: ok/fail alternation never ejects with fall >= 2.
        pytest.param(1, 2, [OK, FAIL] * 10, [], id="flap-ok-first"),
        pytest.param(1, 2, [FAIL, OK] * 10, [], id="flap-fail-first"),
        pytest.param(2, 3, [FAIL, FAIL, OK] * 5, [], id="flap-two-fails-fall-3"),
        # Readmitted after rise consecutive successes.
        pytest.param(2, 2, [FAIL, FAIL, OK, OK], [(1, EJECTED), (3, READMITTED)], id="rise-2"),
        pytest.param(1, 2, [FAIL, FAIL, OK], [(1, EJECTED), (2, READMITTED)], id="rise-1"),
        pytest.param(
            3, 1, [FAIL, OK, OK, FAIL, OK, OK, OK], [(0, EJECTED), (6, READMITTED)], id="rise-3"
        ),
        # While ejected, a failure resets the successes: flapping never readmits with rise >= 2.
        pytest.param(2, 1, [FAIL] + [OK, FAIL] * 10, [(0, EJECTED)], id="flap-while-ejected"),
        # Ejected again after a readmission, once `fall` failures follow in a row again.
        pytest.param(
            2,
            2,
            [FAIL, FAIL, OK, OK, FAIL, OK, FAIL, FAIL],
            [(1, EJECTED), (3, READMITTED), (7, EJECTED)],
            id="eject-readmit-eject",
        ),
    ],
)
def test_transitions(rise: int, fall: int, outcomes: list[bool], expected: list[object]) -> None:
    assert transitions(HealthState(rise, fall), outcomes) == expected


def test_starts_healthy_with_no_history() -> None:
    state = HealthState(rise=2, fall=3)
    assert state.healthy
    assert (state.consecutive_successes, state.consecutive_failures) == (0, 0)
    assert repr(state) == "<HealthState healthy successes=0/2 failures=0/3>"


def test_counters_after_ejection() -> None:
    state = HealthState(rise=2, fall=2)
    transitions(state, [OK, FAIL, FAIL, FAIL, OK])
    assert not state.healthy
    assert repr(state) == "<HealthState ejected successes=1/2 failures=0/2>"


@pytest.mark.parametrize(("rise", "fall"), [(0, 1), (1, 0), (-1, 3)])
def test_thresholds_below_one_are_refused(rise: int, fall: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        HealthState(rise, fall)


TIMEOUT = 1.0
LIMIT = LATE_FRACTION * TIMEOUT


@pytest.mark.parametrize(
    ("timed_out", "start_lag", "deadline_lag", "expected"),
    [
        # The incident of issue #4: a probe sent 13 s late against a 1 s timeout.
        pytest.param(True, 13.0, 0.0, True, id="woken-13s-late"),
        # The loop was blocked across the deadline: an answer may be waiting unread.
        pytest.param(True, 0.0, 3.0, True, id="blocked-across-deadline"),
        pytest.param(True, 0.0, LIMIT * 1.01, True, id="just-over-the-limit"),
        pytest.param(True, LIMIT * 1.01, 0.0, True, id="start-just-over-the-limit"),
        # On time, or late by less than the tolerated share: the timeout is the backend's.
        pytest.param(True, 0.0, 0.0, False, id="on-time"),
        pytest.param(True, 0.002, 0.004, False, id="ordinary-timer-jitter"),
        pytest.param(True, LIMIT, LIMIT, False, id="exactly-at-the-limit"),
        pytest.param(True, -0.001, -0.001, False, id="timer-fired-early"),
        # Only a timeout can be inconclusive: a refusal or a bad status is the backend's answer.
        pytest.param(False, 13.0, 0.0, False, id="not-a-timeout-woken-late"),
        pytest.param(False, 0.0, 3.0, False, id="not-a-timeout-blocked"),
    ],
)
def test_inconclusive_rule(
    timed_out: bool, start_lag: float, deadline_lag: float, expected: bool
) -> None:
    assert (
        is_inconclusive(
            timed_out=timed_out,
            timeout=TIMEOUT,
            start_lag=start_lag,
            deadline_lag=deadline_lag,
        )
        is expected
    )


@pytest.mark.parametrize("timeout", [0.05, 1.0, 30.0])
def test_inconclusive_rule_scales_with_the_timeout(timeout: float) -> None:
    # The same share of the timeout decides for a short check and a long one.
    late = LATE_FRACTION * timeout * 1.5
    on_time = LATE_FRACTION * timeout * 0.5
    assert is_inconclusive(timed_out=True, timeout=timeout, start_lag=0.0, deadline_lag=late)
    assert not is_inconclusive(
        timed_out=True, timeout=timeout, start_lag=on_time, deadline_lag=on_time
    )
