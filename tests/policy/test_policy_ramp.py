# Pure tests of migproxy.policy.ramp: the ratio moves linearly from its old to its new value
# over the ramp, clamped at both ends; a duration of 0 is a step.
from __future__ import annotations

import pytest

from migproxy.policy.ramp import ramped_ratio


@pytest.mark.parametrize(
    ("old", "new", "started", "duration", "now", "expected"),
    [
        pytest.param(0.0, 1.0, 100.0, 10.0, 99.0, 0.0, id="before-start"),
        pytest.param(0.0, 1.0, 100.0, 10.0, 100.0, 0.0, id="at-start"),
        pytest.param(0.0, 1.0, 100.0, 10.0, 102.5, 0.25, id="quarter"),
        pytest.param(0.0, 1.0, 100.0, 10.0, 105.0, 0.5, id="half"),
        pytest.param(0.0, 1.0, 100.0, 10.0, 110.0, 1.0, id="at-end"),
        pytest.param(0.0, 1.0, 100.0, 10.0, 1e9, 1.0, id="long-after"),
        pytest.param(0.2, 0.1, 0.0, 100.0, 50.0, 0.15, id="down"),
        pytest.param(0.2, 0.1, 0.0, 100.0, 100.0, 0.1, id="down-end"),
        pytest.param(0.3, 0.3, 0.0, 10.0, 5.0, 0.3, id="no-change"),
        pytest.param(0.0, 1.0, 100.0, 0.0, 100.0, 1.0, id="step-at-start"),
        pytest.param(0.0, 1.0, 100.0, 0.0, 99.0, 1.0, id="step-is-immediate"),
        pytest.param(0.0, 1.0, 100.0, -1.0, 100.0, 1.0, id="negative-is-step"),
    ],
)
def test_ramped_ratio(
    old: float, new: float, started: float, duration: float, now: float, expected: float
) -> None:
    assert ramped_ratio(old, new, started, duration, now) == pytest.approx(expected)


def test_ramp_is_monotonic_and_stays_between_the_ends() -> None:
    values = [ramped_ratio(0.1, 0.6, 10.0, 30.0, t / 10) for t in range(0, 500)]
    assert values == sorted(values)
    assert min(values) == 0.1 and max(values) == 0.6
