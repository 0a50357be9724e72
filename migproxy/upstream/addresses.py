# The policy of following a DNS name, pure: how long an answer is used, when to look the name
# up again, what is served while lookups fail. Times are passed in; resolver.py does the I/O.
from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable

MIN_LOOKUP_INTERVAL = 1.0  # seconds; a name is never looked up more often than this
REFRESH_FRACTION = 0.75  # look up again when this part of the TTL has passed
RETRY_FIRST = 1.0  # seconds from a failed lookup to the first retry, doubling after that
RETRY_MAX = 30.0
_RETRY_MAX_DOUBLINGS = 16  # keeps 2**n finite after days of failures (2**16 s > RETRY_MAX)
HOSTS_PATH = "/etc/hosts"


def clamp_ttl(ttl: float, min_ttl: float, max_ttl: float) -> float:
    """The seconds an answer with this TTL is used: clamped to [min_ttl, max_ttl], and never
    under MIN_LOOKUP_INTERVAL (since the name is looked up at most that often)."""
    return max(MIN_LOOKUP_INTERVAL, min(max(ttl, min_ttl), max_ttl))


def retry_delay(failures: int, ttl: float) -> float:
    """Seconds from the `failures`-th consecutive failed lookup (1, 2, ...) to the next one:
    RETRY_FIRST, doubling, capped at RETRY_MAX and at `ttl`, never under MIN_LOOKUP_INTERVAL."""
    backoff = RETRY_FIRST * 2.0 ** min(max(failures - 1, 0), _RETRY_MAX_DOUBLINGS)
    return max(MIN_LOOKUP_INTERVAL, min(backoff, RETRY_MAX, ttl))


def sort_addresses(addresses: Iterable[str]) -> tuple[str, ...]:
    """The distinct addresses, IPv4 first, each family in numeric order."""

    def key(address: str) -> tuple[int, int]:
        ip = ipaddress.ip_address(address)
        return ip.version, int(ip)

    return tuple(sorted(set(addresses), key=key))


def hosts_addresses(text: str, name: str) -> tuple[str, ...]:
    """The addresses that `text`, in /etc/hosts format, gives `name` (case-insensitive)."""
    wanted = name.rstrip(".").lower()
    found = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or wanted not in (alias.lower() for alias in fields[1:]):
            continue
        try:
            found.append(str(ipaddress.ip_address(fields[0])))
        except ValueError:  # a malformed line: the C library skips it too
            continue
    return sort_addresses(found)


class AnswerCache:
    """The last good answer for one name and the failed lookups since: which addresses may be
    used at `now`, and when to look the name up next. Pure: times are passed in.

    Attributes:
        addresses: the last good answer (kept after its stale time; see `usable`).
        ttl: its clamped TTL, in seconds.
        received: when it arrived (-inf before the first answer).
        failures: failed lookups since then.
        failed_at: when the last one failed.
    """

    __slots__ = (
        "min_ttl",
        "max_ttl",
        "stale_ttl",
        "addresses",
        "ttl",
        "received",
        "failures",
        "failed_at",
    )

    def __init__(self, min_ttl: float, max_ttl: float, stale_ttl: float) -> None:
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.stale_ttl = stale_ttl
        self.addresses: tuple[str, ...] = ()
        self.ttl = 0.0
        self.received = -math.inf
        self.failures = 0
        self.failed_at = -math.inf

    @property
    def expires(self) -> float:
        return self.received + self.ttl

    @property
    def stale_until(self) -> float:
        return self.expires + self.stale_ttl

    def record_answer(self, addresses: tuple[str, ...], ttl: float, now: float) -> None:
        self.addresses = addresses
        self.ttl = clamp_ttl(ttl, self.min_ttl, self.max_ttl)
        self.received = now
        self.failures = 0

    def record_failure(self, now: float) -> None:
        self.failures += 1
        self.failed_at = now

    def is_fresh(self, now: float) -> bool:
        return now < self.expires

    def is_stale(self, now: float) -> bool:
        """The answer has expired but may still be served."""
        return bool(self.addresses) and self.expires <= now < self.stale_until

    def usable(self, now: float) -> tuple[str, ...]:
        """The addresses to use at `now`, fresh or stale; () when there are none."""
        return self.addresses if now < self.stale_until else ()

    def next_lookup_at(self) -> float:
        """When to look the name up next: once REFRESH_FRACTION of the TTL has passed while
        lookups succeed; after a failure, after `retry_delay`, but no later than the moments
        a failure would change what is served (the expiry, the end of the stale time)."""
        if not self.failures:
            return self.received + max(self.ttl * REFRESH_FRACTION, MIN_LOOKUP_INTERVAL)
        at = self.failed_at + retry_delay(self.failures, self.ttl or RETRY_MAX)
        for moment in (self.expires, self.stale_until):
            if self.failed_at < moment < at:
                at = moment
                break
        return max(at, self.failed_at + MIN_LOOKUP_INTERVAL)
