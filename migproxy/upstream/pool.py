# Pool bookkeeping for keep-alive upstream connections: pure, never awaits, never does I/O.
#
# Rules: idle connections are kept last-in first-out, so a few connections stay warm and the
# ones at the bottom age out under the idle timeout; the caller closes what this returns.
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar


class Poolable(Protocol):
    """What the pool needs to know about a connection."""

    idle_since: float

    def is_usable(self) -> bool:
        """The connection is open and between exchanges."""
        ...


C = TypeVar("C", bound=Poolable)


class IdlePool(Generic[C]):
    """Idle connections to one upstream address, most recently used on top."""

    __slots__ = ("_idle", "max_idle", "idle_timeout")

    def __init__(self, max_idle: int, idle_timeout: float) -> None:
        self._idle: list[C] = []
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout

    def acquire(self, now: float) -> C | None:
        """The most recently used idle connection that is still usable, or None.

        One idle for the idle timeout is left where it is, and so is everything under it (older
        still): expired() hands them to the caller to close. Dropping them here would leak
        their sockets until the upstream closed them."""
        idle = self._idle
        while idle:
            conn = idle[-1]
            if now - conn.idle_since >= self.idle_timeout:
                return None
            idle.pop()
            if conn.is_usable():
                return conn
        return None

    def release(self, conn: C, now: float) -> bool:
        """Keep `conn` for reuse. False means the pool is full: the caller closes it."""
        if len(self._idle) >= self.max_idle:
            return False
        conn.idle_since = now
        self._idle.append(conn)
        return True

    def make_room(self, now: float) -> list[C]:
        """If the pool is full and its oldest connection is past the idle timeout, remove and
        return every such one (the caller closes them), so that a fresh connection is kept
        instead of one the next sweep would close."""
        idle = self._idle
        if len(idle) < self.max_idle or not idle or now - idle[0].idle_since < self.idle_timeout:
            return []
        return self.expired(now)

    def discard(self, conn: C) -> None:
        """Forget `conn` (it closed while idle)."""
        try:
            self._idle.remove(conn)
        except ValueError:
            pass

    def expired(self, now: float) -> list[C]:
        """Remove and return the connections idle for longer than the idle timeout."""
        limit = now - self.idle_timeout
        keep = [c for c in self._idle if c.idle_since > limit]
        if len(keep) == len(self._idle):
            return []
        gone = [c for c in self._idle if c.idle_since <= limit]
        self._idle = keep
        return gone

    def remove_if(self, condition: Callable[[C], bool]) -> list[C]:
        """Remove and return the idle connections for which `condition` holds."""
        gone = [c for c in self._idle if condition(c)]
        if gone:
            self._idle = [c for c in self._idle if not condition(c)]
        return gone

    def drain(self) -> list[C]:
        """Remove and return every idle connection."""
        idle, self._idle = self._idle, []
        return idle

    def __iter__(self) -> Iterator[C]:
        return iter(self._idle)

    def __len__(self) -> int:
        return len(self._idle)

    def __repr__(self) -> str:
        return f"<IdlePool idle={len(self._idle)}/{self.max_idle}>"
