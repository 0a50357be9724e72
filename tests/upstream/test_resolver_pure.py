# The pure policy of upstream/resolver.py, without an event loop or a socket: TTL clamping,
# retry backoff, the union of A and AAAA answers, /etc/hosts parsing, and the AnswerCache
# timeline (fresh, stale, gone; when to look up next).
from __future__ import annotations

import math

import pytest

from migproxy.upstream.addresses import (
    RETRY_MAX,
    AnswerCache,
    clamp_ttl,
    hosts_addresses,
    retry_delay,
    sort_addresses,
)
from migproxy.upstream.resolver import Answer, LookupFailed, describe, union_of


@pytest.mark.parametrize(
    ("ttl", "min_ttl", "max_ttl", "expected"),
    [
        pytest.param(60, 1, 300, 60, id="inside"),
        pytest.param(0, 5, 300, 5, id="raised-to-min"),
        pytest.param(3600, 1, 300, 300, id="lowered-to-max"),
        pytest.param(0, 0, 300, 1.0, id="never-under-a-second"),
        pytest.param(60, 0, 0.5, 1.0, id="max-under-a-second"),
    ],
)
def test_clamp_ttl(ttl: float, min_ttl: float, max_ttl: float, expected: float) -> None:
    assert clamp_ttl(ttl, min_ttl, max_ttl) == expected


def test_retry_delay_doubles_up_to_the_cap() -> None:
    assert [retry_delay(n, 300) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


@pytest.mark.parametrize(
    ("failures", "ttl", "expected"),
    [
        pytest.param(4, 5, 5, id="capped-at-ttl"),
        pytest.param(1, 0.2, 1.0, id="never-under-a-second"),
        pytest.param(10**6, 300, RETRY_MAX, id="days-of-failures"),
    ],
)
def test_retry_delay_bounds(failures: int, ttl: float, expected: float) -> None:
    assert retry_delay(failures, ttl) == expected


def test_sort_addresses_ipv4_first_numeric_distinct() -> None:
    given = ["fd00::2", "10.0.0.10", "10.0.0.9", "fd00::1", "10.0.0.9"]
    assert sort_addresses(given) == ("10.0.0.9", "10.0.0.10", "fd00::1", "fd00::2")


def test_union_of_both_types_takes_the_shorter_ttl() -> None:
    results: list[Answer | BaseException] = [(("10.0.0.1",), 30), (("fd00::1",), 20)]
    assert union_of(results) == (("10.0.0.1", "fd00::1"), 20)


def test_union_of_one_failed_type_is_left_out() -> None:
    results: list[Answer | BaseException] = [(("10.0.0.1",), 30), OSError("unreachable")]
    assert union_of(results) == (("10.0.0.1",), 30)


def test_union_of_nodata_does_not_set_the_ttl() -> None:
    results: list[Answer | BaseException] = [((), math.inf), (("fd00::1",), 20)]
    assert union_of(results) == (("fd00::1",), 20)


def test_union_of_no_address_fails_with_the_first_reason() -> None:
    results: list[Answer | BaseException] = [((), math.inf), OSError("first"), OSError("2nd")]
    with pytest.raises(LookupFailed, match="^OSError: first$"):
        union_of(results)


def test_union_of_nodata_only_fails() -> None:
    results: list[Answer | BaseException] = [((), math.inf), ((), math.inf)]
    with pytest.raises(LookupFailed, match="^no A or AAAA records$"):
        union_of(results)


# describe()'s dnspython cases (NXDOMAIN, SERVFAIL, timeout) are met for real in
# test_resolver.py: dnspython's exception constructors are untyped.
def test_describe_an_unexpected_error() -> None:
    assert describe(ConnectionRefusedError("refused")) == "ConnectionRefusedError: refused"


HOSTS = """\
# comment line
127.0.0.1   localhost  Loopback   # trailing comment
::1         localhost ip6-localhost
10.0.0.5    backend.internal backend
not-an-ip   backend
10.0.0.6
"""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("localhost", ("127.0.0.1", "::1"), id="both-families"),
        pytest.param("LOOPBACK", ("127.0.0.1",), id="case-insensitive-alias"),
        pytest.param("backend.", ("10.0.0.5",), id="trailing-dot-malformed-skipped"),
        pytest.param("missing", (), id="unlisted"),
        pytest.param("comment", (), id="comments-ignored"),
    ],
)
def test_hosts_addresses(name: str, expected: tuple[str, ...]) -> None:
    assert hosts_addresses(HOSTS, name) == expected


def cache_with_answer(ttl: float = 10, stale_ttl: float = 5) -> AnswerCache:
    cache = AnswerCache(min_ttl=1, max_ttl=300, stale_ttl=stale_ttl)
    cache.record_answer(("10.0.0.1",), ttl, now=100)
    return cache


def test_cache_fresh_then_stale_then_gone() -> None:
    cache = cache_with_answer()
    assert cache.is_fresh(109.9) and not cache.is_stale(109.9)
    assert not cache.is_fresh(110) and cache.is_stale(110)
    assert cache.usable(114.9) == ("10.0.0.1",)
    assert not cache.is_stale(115) and cache.usable(115) == ()


def test_cache_without_stale_ttl_is_gone_at_expiry() -> None:
    cache = cache_with_answer(stale_ttl=0)
    assert cache.usable(109.9) == ("10.0.0.1",)
    assert not cache.is_stale(110) and cache.usable(110) == ()


def test_cache_clamps_the_ttl() -> None:
    assert cache_with_answer(ttl=3600).ttl == 300
    assert cache_with_answer(ttl=0).ttl == 1


def test_cache_empty_looks_up_now_and_serves_nothing() -> None:
    cache = AnswerCache(min_ttl=1, max_ttl=300, stale_ttl=5)
    assert cache.next_lookup_at() == -math.inf
    assert cache.usable(0) == () and not cache.is_fresh(0) and not cache.is_stale(0)


def test_cache_refreshes_at_three_quarters_of_the_ttl() -> None:
    assert cache_with_answer(ttl=10).next_lookup_at() == 107.5
    assert cache_with_answer(ttl=1).next_lookup_at() == 101  # never within a second


def test_cache_retries_at_expiry_and_at_the_end_of_the_stale_time() -> None:
    cache = cache_with_answer(ttl=10, stale_ttl=5)  # expires at 110, gone at 115
    cache.record_failure(107.5)
    assert cache.next_lookup_at() == 108.5  # 1 s
    cache.record_failure(108.5)
    assert cache.next_lookup_at() == 110  # 2 s would pass the expiry
    cache.record_failure(110.2)
    assert cache.next_lookup_at() == pytest.approx(114.2)  # 4 s
    cache.record_failure(114.2)
    assert cache.next_lookup_at() == pytest.approx(115.2)  # the stale end, but not within a second
    cache.record_answer(("10.0.0.2",), 10, now=115.3)
    assert cache.failures == 0
    assert cache.next_lookup_at() == pytest.approx(115.3 + 7.5)


def test_cache_retries_without_an_answer_up_to_retry_max() -> None:
    cache = AnswerCache(min_ttl=1, max_ttl=300, stale_ttl=5)
    for _ in range(10):
        cache.record_failure(0)
    assert cache.next_lookup_at() == RETRY_MAX
