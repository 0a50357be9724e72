# The close budget: how many injected closes the proxy may send, in all and to one client.
# Pure: the caller passes `now` (seconds on its monotonic clock) and nothing here reads a clock.
#
# Rules (issue #5):
# - The whole proxy: a token bucket of `rate` closes per second holding up to `burst`; it starts
#   full, so the first `burst` closes go at once. A rate of 0 means no budget.
# - One client address: its injected closes are at least 60 / per_minute seconds apart, so no
#   60 s window ever holds more than per_minute of them, and they come spread rather than in a
#   burst (a client is moved by one close; the next ones only churn it). 0 means no limit.
# - A budget is asked (can_take) before it is charged (take), so that a caller checking
#   several budgets charges none of them for a close that one of them denies.
# - Memory is bounded: the per-client table keeps at most `capacity` addresses, dropping the
#   least recently closed first (forgetting one only lets that client be closed a little sooner).
from __future__ import annotations

import math
from collections import OrderedDict


class TokenBucket:
    """Injected closes per second for the whole proxy; rate 0 = unlimited.

    Raises:
        ValueError: a negative rate, or a burst below 1 (no close could ever pass).
    """

    __slots__ = ("rate", "burst", "tokens", "updated")

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if not rate >= 0.0:
            raise ValueError(f"rate must not be negative, got {rate!r}")
        burst = max(1.0, rate) if burst is None else burst
        if not burst >= 1.0:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.rate = rate
        self.burst = burst
        self.tokens = burst  # starts full
        self.updated = -math.inf  # no refill before the first call: it is full already

    def can_take(self, now: float) -> bool:
        """Whether a close may go now; takes nothing."""
        if self.rate <= 0.0:
            return True
        self._refill(now)
        return self.tokens >= 1.0

    def take(self, now: float) -> bool:
        """Take one close from the bucket if it holds one; False when the budget is spent."""
        if not self.can_take(now):
            return False
        if self.rate > 0.0:
            self.tokens -= 1.0
        return True

    def _refill(self, now: float) -> None:
        elapsed = now - self.updated
        if elapsed > 0.0:  # a clock that seems to step back refills nothing
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.updated = now

    def __repr__(self) -> str:
        return f"<TokenBucket rate={self.rate} burst={self.burst} tokens={self.tokens:.2f}>"


class ClientCloseLimit:
    """Injected closes per client address per minute; 0 = unlimited.

    Raises:
        ValueError: a negative limit or a capacity below 1.
    """

    __slots__ = ("per_minute", "interval", "capacity", "_next_allowed")

    def __init__(self, per_minute: float, capacity: int = 10_000) -> None:
        if not per_minute >= 0.0:
            raise ValueError(f"per_minute must not be negative, got {per_minute!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity!r}")
        self.per_minute = per_minute
        self.interval = 60.0 / per_minute if per_minute > 0.0 else 0.0
        self.capacity = capacity
        # client -> the time from which it may be closed again; least recently closed first.
        self._next_allowed: OrderedDict[bytes, float] = OrderedDict()

    def can_take(self, client: bytes, now: float) -> bool:
        """Whether `client` may be closed now; records nothing."""
        if self.interval <= 0.0:
            return True
        return now >= self._next_allowed.get(client, -math.inf)

    def take(self, client: bytes, now: float) -> bool:
        """Record a close to `client` if its limit allows one; False when it does not."""
        if not self.can_take(client, now):
            return False
        if self.interval > 0.0:
            table = self._next_allowed
            table[client] = now + self.interval
            table.move_to_end(client)
            if len(table) > self.capacity:
                table.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._next_allowed)

    def __repr__(self) -> str:
        return f"<ClientCloseLimit per_minute={self.per_minute} clients={len(self)}>"
