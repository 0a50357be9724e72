# Pure tests of migproxy.policy.budget: the proxy's token bucket (starts full, refills at its
# rate, never above its burst, unlimited at rate 0) and the per-client limit (closes at least
# 60 / per_minute seconds apart, bounded memory).
from __future__ import annotations

import math

import pytest

from migproxy.policy.budget import ClientCloseLimit, TokenBucket


def takes(bucket: TokenBucket, times: list[float]) -> list[bool]:
    return [bucket.take(now) for now in times]


@pytest.mark.parametrize(
    ("rate", "burst", "times", "expected"),
    [
        # Unlimited.
        pytest.param(0.0, None, [0.0] * 1000, [True] * 1000, id="rate-0-unlimited"),
        # Starts full with burst = max(1, rate), then refills at the rate.
        pytest.param(2.0, None, [0.0, 0.0, 0.0], [True, True, False], id="burst-is-rate"),
        pytest.param(0.5, None, [0.0, 0.0], [True, False], id="burst-at-least-1"),
        pytest.param(0.5, None, [0.0, 1.9, 2.0], [True, False, True], id="refill-slow"),
        pytest.param(10.0, None, [0.0] * 10 + [0.05, 0.1], [True] * 10 + [False, True], id="r10"),
        pytest.param(1.0, 3.0, [0.0] * 4, [True] * 3 + [False], id="explicit-burst"),
        # Never more than the burst, however long it rested.
        pytest.param(
            1.0, 2.0, [0.0, 0.0, 1e6, 1e6, 1e6], [True, True, True, True, False], id="cap"
        ),
        # Starts full at any clock value (a monotonic clock need not start at 0).
        pytest.param(1.0, 1.0, [5e5, 5e5], [True, False], id="any-start"),
        # A clock that seems to step back refills nothing.
        pytest.param(1.0, 1.0, [10.0, 9.0, 10.5, 11.0], [True, False, False, True], id="back"),
    ],
)
def test_token_bucket(
    rate: float, burst: float | None, times: list[float], expected: list[bool]
) -> None:
    assert takes(TokenBucket(rate, burst), times) == expected


def test_steady_rate_over_time() -> None:
    bucket = TokenBucket(5.0)
    # One try every 10 ms for 100 s: 5 at start (the burst) + 5 per second.
    admitted = sum(bucket.take(i / 100) for i in range(10_000))
    assert admitted == pytest.approx(5 + 5 * 100, abs=1)


def test_can_take_takes_nothing() -> None:
    bucket = TokenBucket(1.0)
    assert all(bucket.can_take(0.0) for _ in range(5))
    assert bucket.take(0.0)
    assert not bucket.can_take(0.0)
    assert "tokens=0.00" in repr(bucket)


@pytest.mark.parametrize(
    ("rate", "burst"), [(-1.0, None), (math.nan, None), (1.0, 0.5), (1.0, math.nan)]
)
def test_token_bucket_rejects(rate: float, burst: float | None) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


A, B = b"10.0.0.1", b"10.0.0.2"


@pytest.mark.parametrize(
    ("per_minute", "events", "expected"),
    [
        pytest.param(0, [(A, 0.0)] * 100, [True] * 100, id="unlimited"),
        pytest.param(1, [(A, 0.0), (A, 59.9), (A, 60.0)], [True, False, True], id="one-per-min"),
        pytest.param(1, [(A, 0.0), (B, 0.0), (A, 1.0)], [True, True, False], id="per-client"),
        # Spread, not in a burst: 2 per minute means 30 s apart.
        pytest.param(2, [(A, 0.0), (A, 1.0), (A, 30.0)], [True, False, True], id="two-spread"),
        pytest.param(120, [(A, 0.0), (A, 0.4), (A, 0.5)], [True, False, True], id="fast"),
        # A denied close does not push the next one further away.
        pytest.param(1, [(A, 0.0), (A, 30.0), (A, 60.0)], [True, False, True], id="denied-free"),
    ],
)
def test_client_limit(
    per_minute: int, events: list[tuple[bytes, float]], expected: list[bool]
) -> None:
    limit = ClientCloseLimit(per_minute)
    assert [limit.take(client, now) for client, now in events] == expected


@pytest.mark.parametrize("per_minute", [1, 3, 7])
def test_client_limit_never_exceeds_per_minute_in_any_window(per_minute: int) -> None:
    limit = ClientCloseLimit(per_minute)
    admitted = [t / 10 for t in range(6000) if limit.take(A, t / 10)]
    for i, start in enumerate(admitted):
        assert sum(1 for t in admitted[i:] if t < start + 60.0) <= per_minute


def test_client_limit_memory_is_bounded_lru() -> None:
    limit = ClientCloseLimit(1, capacity=2)
    assert limit.take(A, 0.0) and limit.take(B, 0.0)
    assert limit.take(b"c", 0.0)  # A, the least recently closed, is forgotten
    assert len(limit) == 2
    assert limit.take(A, 1.0)  # ...so it may be closed again early: the only cost
    assert not limit.take(b"c", 1.0)
    assert "clients=2" in repr(limit)


def test_client_limit_unlimited_stores_nothing() -> None:
    limit = ClientCloseLimit(0)
    assert limit.take(A, 0.0) and limit.can_take(A, 0.0)
    assert len(limit) == 0


@pytest.mark.parametrize(("per_minute", "capacity"), [(-1, 10), (math.nan, 10), (1, 0)])
def test_client_limit_rejects(per_minute: float, capacity: int) -> None:
    with pytest.raises(ValueError):
        ClientCloseLimit(per_minute, capacity)
