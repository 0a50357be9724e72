# The pool's bookkeeping alone: no sockets, no event loop.
from __future__ import annotations

from dataclasses import dataclass

from migproxy.upstream.pool import IdlePool


@dataclass(eq=False)
class Conn:
    name: str
    usable: bool = True
    idle_since: float = 0.0

    def is_usable(self) -> bool:
        return self.usable


def test_most_recently_released_comes_back_first() -> None:
    pool: IdlePool[Conn] = IdlePool(max_idle=10, idle_timeout=30.0)
    a, b = Conn("a"), Conn("b")
    assert pool.release(a, now=1.0) and pool.release(b, now=2.0)
    assert pool.acquire(now=3.0) is b
    assert pool.acquire(now=3.0) is a
    assert pool.acquire(now=3.0) is None


def test_full_pool_refuses_and_the_caller_closes() -> None:
    pool: IdlePool[Conn] = IdlePool(max_idle=1, idle_timeout=30.0)
    assert pool.release(Conn("a"), now=0.0)
    assert not pool.release(Conn("b"), now=0.0)
    assert len(pool) == 1


def test_unusable_or_too_old_connections_are_skipped() -> None:
    pool: IdlePool[Conn] = IdlePool(max_idle=10, idle_timeout=5.0)
    old, broken, good = Conn("old"), Conn("broken"), Conn("good")
    pool.release(old, now=0.0)
    pool.release(good, now=8.0)
    pool.release(broken, now=9.0)
    broken.usable = False
    assert pool.acquire(now=10.0) is good  # broken is dropped on the way
    assert pool.acquire(now=10.0) is None  # old has been idle for 10 s > 5 s
    assert pool.expired(now=10.0) == [old]  # kept for the caller to close, not leaked
    assert len(pool) == 0


def test_an_expired_connection_on_top_hides_none_below_it() -> None:
    pool: IdlePool[Conn] = IdlePool(max_idle=10, idle_timeout=5.0)
    older, newer = Conn("older"), Conn("newer")
    pool.release(older, now=0.0)
    pool.release(newer, now=1.0)
    assert pool.acquire(now=7.0) is None
    assert pool.expired(now=7.0) == [older, newer]


def test_expired_returns_only_the_old_ones() -> None:
    pool: IdlePool[Conn] = IdlePool(max_idle=10, idle_timeout=5.0)
    old, young = Conn("old"), Conn("young")
    pool.release(old, now=0.0)
    pool.release(young, now=4.0)
    assert pool.expired(now=3.0) == []
    assert pool.expired(now=6.0) == [old]
    assert list(pool) == [young]


def test_discard_and_drain() -> None:
    pool: IdlePool[Conn] = IdlePool(max_idle=10, idle_timeout=5.0)
    a, b = Conn("a"), Conn("b")
    pool.release(a, now=0.0)
    pool.release(b, now=0.0)
    pool.discard(a)
    pool.discard(a)  # already gone: nothing happens
    assert pool.drain() == [b]
    assert len(pool) == 0
    assert repr(pool) == "<IdlePool idle=0/10>"


def test_a_full_pool_makes_room_only_by_removing_expired_connections() -> None:
    pool: IdlePool[Conn] = IdlePool(max_idle=2, idle_timeout=5.0)
    old, young = Conn("old"), Conn("young")
    pool.release(old, now=0.0)
    pool.release(young, now=4.0)
    assert pool.make_room(now=4.5) == []  # full, but nothing expired: the caller closes its own
    assert pool.make_room(now=6.0) == [old]
    assert pool.release(Conn("fresh"), now=6.0)
    assert IdlePool[Conn](max_idle=2, idle_timeout=5.0).make_room(now=100.0) == []
