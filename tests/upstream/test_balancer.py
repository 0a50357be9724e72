"""Pure tests of the balancer: address changes, health, and the choice of a backend."""

from __future__ import annotations

from collections import Counter

import pytest

from migproxy.upstream.balancer import LEAST_OUTSTANDING, ROUND_ROBIN, Backend, Balancer


class Conn:
    def __init__(self) -> None:
        self.idle_since = 0.0
        self.open = True

    def is_usable(self) -> bool:
        return self.open


def balancer(mode: str = LEAST_OUTSTANDING, fail_open: bool = True) -> Balancer[Conn]:
    return Balancer(80, mode, fail_open=fail_open, max_idle=4, idle_timeout=10.0)


def picks(b: Balancer[Conn], n: int) -> Counter[str]:
    out: Counter[str] = Counter()
    for _ in range(n):
        backend = b.pick()
        assert backend is not None
        out[backend.host] += 1
    return out


def test_update_reports_added_and_removed_and_keeps_existing_backends() -> None:
    b = balancer()
    added, removed = b.update(["10.0.0.1", "10.0.0.2"])
    assert [x.host for x in added] == ["10.0.0.1", "10.0.0.2"] and removed == []
    first = b.backends["10.0.0.1"]
    added, removed = b.update(["10.0.0.1", "10.0.0.3", "10.0.0.3"])
    assert [x.host for x in added] == ["10.0.0.3"]
    assert [x.host for x in removed] == ["10.0.0.2"]
    assert removed[0].retired and not removed[0].eligible
    assert b.backends["10.0.0.1"] is first  # its pool and load survive the change
    assert list(b.backends) == ["10.0.0.1", "10.0.0.3"]


def test_removed_address_gets_no_new_request_and_new_one_gets_them_at_once() -> None:
    b = balancer(ROUND_ROBIN)
    b.update(["10.0.0.1", "10.0.0.2"])
    b.update(["10.0.0.2", "10.0.0.3"])
    assert set(picks(b, 10)) == {"10.0.0.2", "10.0.0.3"}


@pytest.mark.parametrize("mode", [LEAST_OUTSTANDING, ROUND_ROBIN])
def test_idle_backends_share_requests_evenly(mode: str) -> None:
    b = balancer(mode)
    b.update(["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    assert picks(b, 300) == {"10.0.0.1": 100, "10.0.0.2": 100, "10.0.0.3": 100}


def test_least_outstanding_prefers_the_least_loaded() -> None:
    b = balancer()
    b.update(["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    b.backends["10.0.0.1"].outstanding = 5
    b.backends["10.0.0.2"].outstanding = 1
    b.backends["10.0.0.3"].outstanding = 3
    assert picks(b, 5) == {"10.0.0.2": 5}


def test_least_outstanding_follows_the_load_it_creates() -> None:
    b = balancer()
    b.update(["10.0.0.1", "10.0.0.2"])
    b.backends["10.0.0.1"].outstanding = 3
    chosen = []
    for _ in range(5):
        backend = b.pick()
        assert backend is not None
        backend.outstanding += 1  # as the data path does for each exchange it starts
        chosen.append(backend.host)
    assert chosen[:3] == ["10.0.0.2"] * 3
    assert sorted(chosen[3:]) == ["10.0.0.1", "10.0.0.2"]


def test_round_robin_ignores_load() -> None:
    b = balancer(ROUND_ROBIN)
    b.update(["10.0.0.1", "10.0.0.2"])
    b.backends["10.0.0.1"].outstanding = 100
    assert picks(b, 4) == {"10.0.0.1": 2, "10.0.0.2": 2}


def test_ejected_backend_gets_nothing_and_comes_back_when_readmitted() -> None:
    b = balancer()
    b.update(["10.0.0.1", "10.0.0.2"])
    one = b.backends["10.0.0.1"]
    b.set_healthy(one, False)
    assert not one.eligible and not b.all_down
    assert picks(b, 6) == {"10.0.0.2": 6}
    b.set_healthy(one, True)
    assert one.eligible
    assert picks(b, 6) == {"10.0.0.1": 3, "10.0.0.2": 3}


@pytest.mark.parametrize(
    ("fail_open", "expected"), [(True, {"10.0.0.1", "10.0.0.2"}), (False, None)]
)
def test_all_down_fails_open_or_leaves_nothing(fail_open: bool, expected: set[str] | None) -> None:
    b = balancer(fail_open=fail_open)
    b.update(["10.0.0.1", "10.0.0.2"])
    for backend in list(b.backends.values()):
        b.set_healthy(backend, False)
    assert b.all_down
    if expected is None:
        assert b.pick() is None
    else:
        assert set(picks(b, 4)) == expected
    b.set_healthy(b.backends["10.0.0.2"], True)
    assert not b.all_down
    assert picks(b, 4) == {"10.0.0.2": 4}


def test_empty_answer_leaves_nothing_to_pick() -> None:
    b = balancer()
    b.update(["10.0.0.1"])
    _, removed = b.update([])
    assert [x.host for x in removed] == ["10.0.0.1"]
    assert b.pick() is None and not b.all_down and len(b) == 0


def test_single_backend_is_always_picked() -> None:
    b = balancer()
    b.update(["10.0.0.1"])
    backend = b.backends["10.0.0.1"]
    backend.outstanding = 1000
    assert all(b.pick() is backend for _ in range(5))


def test_backend_label_brackets_ipv6() -> None:
    assert Backend[Conn]("::1", 80, 1, 1.0).label == "[::1]:80"
    assert Backend[Conn]("10.0.0.1", 80, 1, 1.0).label == "10.0.0.1:80"


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="random"):
        balancer("random")


def test_only_is_the_single_eligible_backend() -> None:
    b = balancer(fail_open=False)
    b.update(["10.0.0.1"])
    assert b.only is b.backends["10.0.0.1"]
    b.update(["10.0.0.1", "10.0.0.2"])
    assert b.only is None
    b.set_healthy(b.backends["10.0.0.2"], False)
    assert b.only is b.backends["10.0.0.1"]
    b.set_healthy(b.backends["10.0.0.1"], False)
    assert b.only is None and b.pick() is None
