# Pure tests of migproxy.policy.returning: what counts as a returning reconnect (the window, one
# return per close), the back-off it earns (growth, cap), the decay of strikes, the LRU bound,
# and the admin API's top list.
from __future__ import annotations

import math

import pytest

from migproxy.policy.returning import ReturningClient, ReturningClients

A, B, C = b"10.0.0.1", b"10.0.0.2", b"2001:db8::3"


def strike(table: ReturningClients, client: bytes, at: float) -> bool:
    """A forced close at `at`, and the client back 0.1 s later."""
    table.closed(client, at)
    return table.connected(client, at + 0.1)


@pytest.mark.parametrize(
    ("closed_at", "connected_at", "expected"),
    [
        pytest.param(None, 1.0, False, id="never-closed"),
        pytest.param(0.0, 0.0, True, id="at-once"),
        pytest.param(0.0, 4.99, True, id="in-window"),
        pytest.param(0.0, 5.0, True, id="window-inclusive"),
        pytest.param(0.0, 5.01, False, id="after-window"),
        pytest.param(10.0, 9.0, False, id="before-the-close"),
    ],
)
def test_window(closed_at: float | None, connected_at: float, expected: bool) -> None:
    table = ReturningClients(window=5.0)
    if closed_at is not None:
        table.closed(A, closed_at)
    assert table.connected(A, connected_at) is expected


def test_one_return_per_close() -> None:
    table = ReturningClients()
    table.closed(A, 0.0)
    assert table.connected(A, 0.1)
    assert not table.connected(A, 0.2)  # a second connection after the same close
    assert table.strikes(A, 0.2) == 1
    table.closed(A, 1.0)
    assert not table.connected(A, 7.0)  # missed the window: the close is used up anyway
    table.closed(A, 8.0)
    assert table.connected(A, 8.5)


def test_unknown_addresses_are_not_stored() -> None:
    table = ReturningClients()
    assert not table.connected(A, 0.0)
    assert not table.held(A, 0.0)
    assert table.strikes(A, 0.0) == 0
    assert len(table) == 0


def test_backoff_grows_and_caps() -> None:
    table = ReturningClients(window=5.0, max_backoff=60.0)
    holds = []
    strikes = []
    t = 0.0
    for _ in range(7):
        assert strike(table, A, t)
        t += 0.1
        strikes.append(table.strikes(A, t))
        hold = table.top(1, t)[0].held_until - t
        holds.append(round(hold, 6))
        t += hold  # the next close comes as soon as the hold ends
    assert holds == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0]
    assert strikes == [1, 2, 3, 4, 5, 5, 5]  # capped at the first strike whose hold is 60
    assert table.max_strikes == 5


@pytest.mark.parametrize(
    ("window", "max_backoff", "holds", "max_strikes"),
    [
        pytest.param(5.0, 60.0, [0.0, 5.0, 10.0, 20.0, 40.0, 60.0, 60.0], 5, id="defaults"),
        pytest.param(10.0, 30.0, [0.0, 10.0, 20.0, 30.0, 30.0, 30.0, 30.0], 3, id="10-30"),
        pytest.param(5.0, 40.0, [0.0, 5.0, 10.0, 20.0, 40.0, 40.0, 40.0], 4, id="exact-power"),
        pytest.param(5.0, 3.0, [0.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0], 1, id="cap-below-window"),
        pytest.param(5.0, 0.0, [0.0] * 7, 1, id="no-backoff"),
    ],
)
def test_backoff_rule(
    window: float, max_backoff: float, holds: list[float], max_strikes: int
) -> None:
    table = ReturningClients(window=window, max_backoff=max_backoff)
    assert [table.backoff(s) for s in range(7)] == holds
    assert table.max_strikes == max_strikes


def test_held_from_the_return() -> None:
    table = ReturningClients()
    table.closed(A, 100.0)
    assert not table.held(A, 100.0)  # a close alone holds nothing
    assert table.connected(A, 101.0)
    assert table.held(A, 101.0)
    assert table.held(A, 105.999)
    assert not table.held(A, 106.0)
    assert not table.held(B, 101.0)


def test_strikes_decay_while_the_address_stays_away() -> None:
    table = ReturningClients(window=5.0, max_backoff=60.0)
    t = 0.0
    for _ in range(3):  # returns at 0.1, 5.2 and 15.3; the last hold (20 s) ends at 35.3
        strike(table, A, t)
        t += 0.1 + table.backoff(table.strikes(A, t + 0.1))
    hold_end = table.top(1, t)[0].held_until
    assert hold_end == pytest.approx(35.3)
    assert table.strikes(A, 15.3) == 3
    assert table.strikes(A, hold_end - 1) == 3  # no decay during the hold
    assert [table.strikes(A, hold_end + d) for d in (59.9, 60.0, 119.9, 120.0, 180.0, 1e6)] == [
        3,
        2,
        2,
        1,
        0,
        0,
    ]
    # A return after two decay periods starts from the decayed count: 1 + 1 strikes, a 10 s hold.
    table.closed(A, hold_end + 130.0)
    assert table.connected(A, hold_end + 130.1)
    assert table.strikes(A, hold_end + 130.1) == 2
    assert table.top(1, 0.0)[0].held_until == pytest.approx(hold_end + 140.1)


def test_a_client_that_keeps_returning_climbs_to_the_cap() -> None:
    # Each return comes right after the hold ends (< max_backoff later), so no strike decays.
    table = ReturningClients(window=5.0, max_backoff=60.0)
    t = 0.0
    for _ in range(10):
        strike(table, A, t)
        t += 0.1 + table.backoff(table.strikes(A, t + 0.1))
    assert table.strikes(A, t) == 5
    assert table.top(1, t)[0].returns == 10


def test_window_zero_turns_detection_off() -> None:
    table = ReturningClients(window=0.0)
    table.closed(A, 1.0)
    assert not table.connected(A, 1.0)
    assert not table.held(A, 1.0)


def test_a_reload_that_turns_tracking_off_or_lowers_the_cap_ends_or_shortens_holds() -> None:
    table = ReturningClients(window=5.0, max_backoff=60.0)
    for at in (0.0, 10.0, 30.0):  # three returns: held 20 s from the last
        table.closed(A, at)
        assert table.connected(A, at + 1.0)
    assert table.held(A, 45.0)
    table.configure(window=5.0, max_backoff=10.0)
    assert table.held(A, 40.0) and not table.held(A, 41.0)  # 10 s from the return at 31
    assert table.top(1, 40.0)[0].held_until == 41.0  # as the admin API shows it
    table.configure(window=0.0, max_backoff=60.0)  # "0 turns it off"
    assert not table.held(A, 35.0)
    assert table.top(1, 35.0)[0].held_until == 31.0  # over since the return


def test_no_backoff_still_counts_returns() -> None:
    table = ReturningClients(max_backoff=0.0)
    assert strike(table, A, 0.0)
    assert not table.held(A, 0.1)
    assert table.top(1, 0.1) == [ReturningClient("10.0.0.1", 1, 0, 0.1)]


def test_lru_bound() -> None:
    table = ReturningClients(capacity=2)
    table.closed(A, 0.0)
    table.closed(B, 0.0)
    table.closed(C, 0.0)  # A, the least recently used, is dropped
    assert len(table) == 2
    assert not table.connected(A, 1.0)
    assert table.connected(B, 1.0) and table.connected(C, 1.0)


def test_lru_keeps_what_was_used_recently() -> None:
    table = ReturningClients(capacity=2)
    table.closed(A, 0.0)
    table.closed(B, 0.0)
    assert table.connected(A, 0.5)  # a return touches A: B is now the oldest
    table.closed(C, 1.0)
    assert table.strikes(A, 1.0) == 1
    assert table.strikes(B, 1.0) == 0 and len(table) == 2
    table.closed(C, 2.0)  # an address already known is not added twice
    assert len(table) == 2


def test_lru_bound_under_many_addresses() -> None:
    table = ReturningClients(capacity=100)
    for i in range(10_000):
        client = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}".encode()
        strike(table, client, float(i))
    assert len(table) == 100


def test_top() -> None:
    table = ReturningClients()
    for t in (0.0, 100.0, 200.0):
        strike(table, A, t)  # 3 returns, strikes decayed between them
    for t in (0.0, 10.0):
        strike(table, B, t)  # 2 returns, 2 strikes
    for t in (0.0, 300.0):
        strike(table, C, t)  # 2 returns, 1 strike (decayed), but the latest
    table.closed(b"10.9.9.9", 0.0)  # closed, never returned: not listed
    now = 301.0
    top = table.top(10, now)
    assert [(c.address, c.returns) for c in top] == [
        ("10.0.0.1", 3),
        ("2001:db8::3", 2),  # B's 2 strikes have decayed to 0 by now: C wins on strikes
        ("10.0.0.2", 2),
    ]
    assert top[1] == ReturningClient("2001:db8::3", 2, 1, 305.1)
    assert [c.address for c in table.top(1, now)] == ["10.0.0.1"]
    assert table.top(0, now) == []


def test_top_breaks_ties_by_strikes_then_latest() -> None:
    table = ReturningClients()
    strike(table, A, 0.0)
    strike(table, B, 1.0)
    assert [c.address for c in table.top(2, 2.0)] == ["10.0.0.2", "10.0.0.1"]
    strike(table, A, 2.0)  # A: 2 returns, 2 strikes
    strike(table, B, 8.0)  # B too, and later
    top = table.top(2, 9.0)
    assert [(c.address, c.returns, c.strikes) for c in top] == [
        ("10.0.0.2", 2, 2),  # same returns and strikes as A: the latest return first
        ("10.0.0.1", 2, 2),
    ]


def test_top_address_is_plain_text_even_when_odd() -> None:
    table = ReturningClients()
    strike(table, b"\xff-", 0.0)
    assert table.top(1, 0.1)[0].address == "\ufffd-"


@pytest.mark.parametrize(
    ("window", "max_backoff", "capacity"),
    [(-1.0, 60.0, 10), (5.0, -1.0, 10), (math.nan, 60.0, 10), (5.0, 60.0, 0)],
)
def test_rejects(window: float, max_backoff: float, capacity: int) -> None:
    with pytest.raises(ValueError):
        ReturningClients(window, max_backoff, capacity)


def test_repr() -> None:
    assert repr(ReturningClients()) == "<ReturningClients window=5.0 addresses=0>"


def test_forget_drops_every_hold() -> None:
    table = ReturningClients(window=5.0, max_backoff=60.0)
    table.closed(b"10.0.0.1", 0.0)
    assert table.connected(b"10.0.0.1", 1.0)
    assert table.held(b"10.0.0.1", 2.0)
    table.forget()
    assert not table.held(b"10.0.0.1", 2.0) and len(table) == 0
