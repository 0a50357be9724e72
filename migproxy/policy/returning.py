# Returning clients: addresses that reconnect right after a forced close, because their DNS
# cache still points here (curl caches 60 s, the JVM 30 s, aiohttp 10 s). Closing such a client
# again before its cache expires only adds a reconnect to the old VIP, so closes to it back off.
# Pure: the caller passes `now` (seconds on its monotonic clock) and nothing here reads a clock.
#
# Rules (issue #5, DESIGN.md §2):
# - A return: a connection from an address within `window` seconds (inclusive) of the last
#   forced close sent to that address. A close is matched by one return at most, so a client
#   that opens several connections after one close takes one strike, not several.
# - Each return adds a strike and holds closes to the address for
#   min(window * 2 ** (strikes - 1), max_backoff) seconds from the return: 5, 10, 20, 40, 60 s
#   with the defaults. A curl client (60 s cache) is moved by about five closes this way, where
#   closing it at every response costs hundreds of reconnects.
# - Strikes stop at the first one whose hold reaches max_backoff (5 with the defaults): more
#   could not lengthen the hold, only delay forgiveness.
# - Decay: once its hold has ended, an address loses a strike for every max_backoff seconds it
#   stays away (no return); with the defaults, 5 strikes are forgotten 6 minutes after the last
#   return. Counted from the end of the hold, not from the return, since an address cannot
#   return while its closes are held: a client that keeps coming back after every hold keeps
#   its strikes and stays at the cap.
# - Memory is bounded: at most `capacity` addresses, least recently used dropped first. Only
#   a forced close adds an address; a connection from an unknown address stores nothing.
from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReturningClient:
    """One address of the admin API's list of returning clients, as plain data."""

    address: str
    returns: int  # returning reconnects seen from it since it entered the table
    strikes: int  # after decay, at the time of the listing
    held_until: float  # closes to it are held until then (caller's clock)


class _Entry:
    __slots__ = ("closed_at", "returns", "strikes", "struck_at", "held_until")

    def __init__(self) -> None:
        self.closed_at: float | None = None  # the last forced close not yet matched by a return
        self.returns = 0
        self.strikes = 0  # as of the last return; decays once the hold has ended
        self.struck_at = -math.inf  # the last return
        self.held_until = -math.inf


class ReturningClients:
    """An LRU table of client addresses that came back after a forced close.

    Raises:
        ValueError: a negative window or max_backoff, or a capacity below 1.
    """

    __slots__ = ("window", "max_backoff", "capacity", "max_strikes", "_entries")

    def __init__(
        self, window: float = 5.0, max_backoff: float = 60.0, capacity: int = 10_000
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity!r}")
        self.capacity = capacity
        self.configure(window, max_backoff)
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    def configure(self, window: float, max_backoff: float) -> None:
        """Set the window and the longest back-off (at start, and on reload: the table stays)."""
        if not (window >= 0.0 and max_backoff >= 0.0):
            raise ValueError(
                f"window and max_backoff must not be negative: {window}, {max_backoff}"
            )
        self.window = window
        self.max_backoff = max_backoff
        # The first strike whose hold, window * 2 ** (strikes - 1), reaches max_backoff.
        self.max_strikes = 1
        while self.max_strikes < 64 and window * 2.0 ** (self.max_strikes - 1) < max_backoff:
            self.max_strikes += 1

    def backoff(self, strikes: int) -> float:
        """How long closes are held after a return that brought an address to `strikes`."""
        if strikes <= 0:
            return 0.0
        return min(self.window * 2.0 ** (strikes - 1), self.max_backoff)

    def closed(self, client: bytes, now: float) -> None:
        """Record a forced close sent to `client` (an injected close, when it is carried out)."""
        entries = self._entries
        entry = entries.get(client)
        if entry is None:
            entry = entries[client] = _Entry()
            if len(entries) > self.capacity:
                entries.popitem(last=False)
        else:
            entries.move_to_end(client)
        entry.closed_at = now

    def connected(self, client: bytes, now: float) -> bool:
        """Record a new connection from `client`; True if it is a returning reconnect."""
        entry = self._entries.get(client)
        if entry is None or entry.closed_at is None:
            return False
        closed_at = entry.closed_at
        entry.closed_at = None  # one return per close, at most
        if self.window <= 0.0 or not 0.0 <= now - closed_at <= self.window:
            return False
        self._entries.move_to_end(client)
        entry.strikes = min(self._decayed(entry, now) + 1, self.max_strikes)
        entry.struck_at = now
        entry.returns += 1
        entry.held_until = now + self.backoff(entry.strikes)
        return True

    def held(self, client: bytes, now: float) -> bool:
        """Whether injected closes to `client` are held back now."""
        entry = self._entries.get(client)
        return entry is not None and now < self._hold_end(entry)

    def _hold_end(self, entry: _Entry) -> float:
        """When the hold of `entry` ends under the settings in force: a reload that turns
        tracking off or lowers max_backoff ends or shortens the holds it finds."""
        if self.window <= 0.0:
            return entry.struck_at  # over (and a finite time, for the admin API's JSON)
        return min(entry.held_until, entry.struck_at + self.max_backoff)

    def strikes(self, client: bytes, now: float) -> int:
        """The strikes of `client` at `now`, after decay; 0 for an unknown address."""
        entry = self._entries.get(client)
        return 0 if entry is None else self._decayed(entry, now)

    def top(self, n: int, now: float) -> list[ReturningClient]:
        """The `n` addresses with the most returns, for the admin API.

        Ties go to more strikes, then to the latest return.
        """
        ranked = heapq.nlargest(
            n,
            (item for item in self._entries.items() if item[1].returns > 0),
            key=lambda item: (item[1].returns, self._decayed(item[1], now), item[1].struck_at),
        )
        return [
            ReturningClient(
                address=client.decode("ascii", "replace"),
                returns=entry.returns,
                strikes=self._decayed(entry, now),
                held_until=self._hold_end(entry),
            )
            for client, entry in ranked
        ]

    def _decayed(self, entry: _Entry, now: float) -> int:
        if entry.strikes == 0:
            return 0
        if self.max_backoff <= 0.0:
            return 0  # no hold to lengthen: nothing to remember
        forgiven = int((now - entry.held_until) // self.max_backoff)
        return max(0, entry.strikes - max(0, forgiven))

    def forget(self) -> None:
        """Forget every address: a new migration epoch. Clients held back because DNS kept
        sending them here may now be sent elsewhere, so holding their closes would keep them."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<ReturningClients window={self.window} addresses={len(self)}>"
