# Pure tests of migproxy.policy.gate: an injected close is admitted, held for the budget
# (budget_denied) or held for a returning client (returning_backoff); tokens are taken only on
# admission. Ends with the case the back-off exists for: a client whose DNS cache outlives
# many closes.
from __future__ import annotations

import pytest

from migproxy.policy.budget import TokenBucket
from migproxy.policy.close import ClosePolicy, age_limit, decide_close
from migproxy.policy.gate import CloseGate, Hold
from migproxy.policy.returning import ReturningClients

A, B = b"10.0.0.1", b"10.0.0.2"


def test_hold_values_are_metric_labels() -> None:
    assert Hold.BUDGET.value == "budget_denied"
    assert Hold.RETURNING.value == "returning_backoff"


def test_unlimited_admits_everything() -> None:
    gate = CloseGate(0.0, 0)
    assert [gate.admit(A, 0.0) for _ in range(1000)] == [None] * 1000


@pytest.mark.parametrize(
    ("per_second", "per_client", "events", "expected"),
    [
        pytest.param(
            1.0, 0, [(A, 0.0), (B, 0.0), (B, 1.0)], [None, Hold.BUDGET, None], id="proxy-budget"
        ),
        pytest.param(
            0.0, 1, [(A, 0.0), (B, 0.0), (A, 1.0)], [None, None, Hold.BUDGET], id="client-budget"
        ),
        pytest.param(
            0.0, 1, [(A, 0.0), (A, 59.0), (A, 60.0)], [None, Hold.BUDGET, None], id="client-minute"
        ),
    ],
)
def test_budget_denied(
    per_second: float,
    per_client: int,
    events: list[tuple[bytes, float]],
    expected: list[Hold | None],
) -> None:
    gate = CloseGate(per_second, per_client)
    assert [gate.admit(client, now) for client, now in events] == expected


def test_tokens_are_taken_only_on_admission() -> None:
    # A held by its per-client limit must not spend the proxy's token that B needs.
    gate = CloseGate(1.0, 1)
    assert gate.admit(A, 0.0) is None
    assert gate.admit(A, 1.0) is Hold.BUDGET  # per-client limit; the proxy's token is left
    assert gate.admit(B, 1.0) is None
    assert gate.admit(B, 1.5) is Hold.BUDGET  # the proxy budget; B's client budget is not spent
    assert gate.per_client.can_take(b"10.0.0.3", 1.5)
    # And a close denied by the proxy's budget does not spend the client's.
    gate = CloseGate(1.0, 1)
    assert gate.admit(A, 0.0) is None
    assert gate.admit(B, 0.5) is Hold.BUDGET
    assert gate.admit(B, 1.0) is None


def test_returning_backoff() -> None:
    returning = ReturningClients(window=5.0, max_backoff=60.0)
    gate = CloseGate(1.0, 0, returning)
    assert gate.admit(A, 0.0) is None
    returning.closed(A, 0.0)  # the caller records the close when it is carried out
    assert returning.connected(A, 0.2)
    assert gate.admit(A, 1.0) is Hold.RETURNING
    assert gate.admit(B, 1.0) is None  # the held close took no token
    assert gate.admit(A, 5.2) is None  # the 5 s hold has ended


def test_returning_is_asked_before_the_budget() -> None:
    returning = ReturningClients()
    returning.closed(A, 0.0)
    returning.connected(A, 0.1)
    gate = CloseGate(1.0, 0, returning, burst=1.0)
    assert gate.admit(B, 0.2) is None  # the bucket is now empty
    assert gate.admit(A, 0.3) is Hold.RETURNING  # not BUDGET: the more specific reason


def test_burst_and_capacity_are_passed_on() -> None:
    gate = CloseGate(1.0, 1, burst=3.0, capacity=5)
    assert gate.bucket.burst == 3.0 and gate.per_client.capacity == 5
    assert "TokenBucket" in repr(gate)


def moved_after_closes(returning: ReturningClients | None) -> int:
    """Closes sent to one curl-like client before it moves to the new VIP.

    The client sends a request every 0.1 s; DNS changed at t=0 and its DNS cache holds the old
    answer until t=60, so a close before then brings it straight back here. The proxy injects
    a close at every response it may (ratio 1), through the gate.
    """
    gate = CloseGate(0.0, 0, returning)
    policy = ClosePolicy(ratio=1.0)
    closes = 0
    for step in range(10_000):
        now = step / 10
        decision = decide_close(
            client_keep_alive=True,
            required=None,
            draining=False,
            policy=policy,
            now=now,
            opened_at=0.0,
            age_limit=age_limit(policy, 0.0, 0.0),
            requests=1,
            in_scope=True,
            rng=lambda: 0.0,
        )
        if decision.close and gate.admit(A, now) is None:
            closes += 1
            if now >= 60.0:
                return closes  # its next dial resolves DNS afresh: moved
            if returning is not None:
                returning.closed(A, now)
                returning.connected(A, now + 0.05)  # reconnects at once, to this VIP
    raise AssertionError("never moved")


def test_backoff_moves_a_60s_dns_cache_with_few_closes() -> None:
    # DESIGN.md §2: closing at every response costs curl ~600 reconnects to move once.
    assert moved_after_closes(None) == 601
    # Holds of 5, 10, 20, 40 s: closes at about 0, 5, 15, 35 and 75 s.
    assert moved_after_closes(ReturningClients()) == 5


def test_the_per_second_budget_is_for_the_whole_proxy() -> None:
    gate = CloseGate(2.0, 0)
    assert isinstance(gate.bucket, TokenBucket)
    assert [gate.admit(client, 0.0) for client in (A, B, b"c")] == [None, None, Hold.BUDGET]
