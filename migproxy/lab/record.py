# What the fleet of one policy run saw, counted per second and per client.
#
# Rules:
# - Pure: every method takes `now`, seconds since the fleet's start; nothing reads a clock.
# - Counts go to 1-second slots; an event at or after the end of the run is not counted (the
#   fleet is being stopped then, and the run's figures end with the run).
# - Per client it keeps only what the analysis needs: the VIP of its last request, when it
#   last asked DNS, and the times at which its requests changed VIP (its moves). mark() takes
#   a picture of every client at a weight step and at the end, so each step's moves and
#   reconnects can be counted without storing every request.
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from migproxy.lab.fleet import ClientSpec, classes
from migproxy.lab.scenario import Policy

OLD, NEW = 0, 1  # VIP indexes, also the order of the per-VIP series
VIPS = ("old", "new")
# The proxies' counters the lab reads from /metrics (sample names), summed over their labels,
# and the deferred closes by cause: HELD_RETURNING is the returning-client back-off at work.
COUNTERS = (
    "migproxy_requests_total",
    "migproxy_connections_opened_total",
    "migproxy_returning_reconnects_total",
    "migproxy_injected_closes_total",
    "migproxy_deferred_closes_total",
)
HELD_RETURNING = "migproxy_deferred_closes_total:returning_backoff"
HELD_BUDGET = "migproxy_deferred_closes_total:budget_denied"


@dataclass(frozen=True, slots=True)
class ClientState:
    """A client at one moment: the VIP its last request went to (None: none yet), and when it
    last asked DNS (-inf: never)."""

    vip: int | None
    looked_up: float


def _zeros(n: int) -> list[int]:
    return [0] * n


class Recorder:
    """Per-second counts of a fleet's requests, connections, DNS answers and errors.

    Attributes:
        requests, connects, lookups: [vip][slot] counts of requests answered, connections
            opened (a client's first included) and DNS answers, per VIP.
        reconnects: [slot] connections opened after a client's first.
        closes: [slot] responses that announced Connection: close.
        errors: [slot] failed requests, connects or lookups; error_kinds counts them by kind.
        class_requests: [class][vip][slot], classes in fleet.classes() order.
        moves: per client, (time, vip) of each request that went to another VIP than the one
            before it.
        marks: (time, client states) taken by mark().
    """

    def __init__(self, specs: Sequence[ClientSpec], duration: float) -> None:
        self.slots = math.ceil(duration)
        self.classes = classes(specs)
        self._class_of = [self.classes.index(spec.klass) for spec in specs]
        n = self.slots
        self.requests = [_zeros(n), _zeros(n)]
        self.connects = [_zeros(n), _zeros(n)]
        self.lookups = [_zeros(n), _zeros(n)]
        self.reconnects = _zeros(n)
        self.closes = _zeros(n)
        self.errors = _zeros(n)
        self.error_kinds: Counter[str] = Counter()
        self.class_requests = [[_zeros(n), _zeros(n)] for _ in self.classes]
        self.moves: list[list[tuple[float, int]]] = [[] for _ in specs]
        self.marks: list[tuple[float, tuple[ClientState, ...]]] = []
        self._vip: list[int | None] = [None] * len(specs)
        self._looked_up = [-math.inf] * len(specs)
        self._connected = [False] * len(specs)

    def _slot(self, now: float) -> int | None:
        slot = math.floor(now)
        return slot if 0 <= slot < self.slots else None

    def request(self, now: float, client: int, vip: int, closed: bool) -> None:
        """A request of `client` was answered by `vip`; `closed`: the response announced
        Connection: close."""
        slot = self._slot(now)
        if slot is None:
            return
        self.requests[vip][slot] += 1
        self.class_requests[self._class_of[client]][vip][slot] += 1
        if closed:
            self.closes[slot] += 1
        if self._vip[client] is not None and self._vip[client] != vip:
            self.moves[client].append((now, vip))
        self._vip[client] = vip

    def connect(self, now: float, client: int, vip: int) -> None:
        """`client` opened a connection to `vip`."""
        slot = self._slot(now)
        if slot is None:
            return
        self.connects[vip][slot] += 1
        if self._connected[client]:
            self.reconnects[slot] += 1
        self._connected[client] = True

    def lookup(self, now: float, client: int, vip: int) -> None:
        """`client` asked DNS and got `vip`."""
        slot = self._slot(now)
        if slot is None:
            return
        self.lookups[vip][slot] += 1
        self._looked_up[client] = now

    def error(self, now: float, client: int, kind: str) -> None:
        """A request, connect or lookup of `client` failed (`kind`: e.g. "connect")."""
        slot = self._slot(now)
        if slot is None:
            return
        self.errors[slot] += 1
        self.error_kinds[kind] += 1

    def mark(self, now: float) -> None:
        """Take a picture of every client (at a weight step, and at the end)."""
        states = tuple(
            ClientState(vip, looked_up)
            for vip, looked_up in zip(self._vip, self._looked_up, strict=True)
        )
        self.marks.append((now, states))

    def clients_on(self, vip: int) -> int:
        """How many clients sent their last request to `vip`."""
        return sum(1 for v in self._vip if v == vip)


class ProxySeries:
    """Per-second increases of the proxies' counters (by VIP), from one scrape a second.

    The first scrape of a proxy is its baseline; each later one adds the increase since the
    one before to the slot it is given (a counter that went down counts from zero).
    """

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.increases: dict[str, dict[str, list[float]]] = {vip: {} for vip in VIPS}
        self.totals: dict[str, dict[str, float]] = {vip: {} for vip in VIPS}  # since baseline
        self._last: dict[str, dict[str, float] | None] = dict.fromkeys(VIPS)

    def add(self, vip: str, slot: int, counters: dict[str, float] | None) -> None:
        """Account a scrape of `vip`'s proxy (None: it failed, the next one catches up)."""
        if counters is None:
            return
        last = self._last[vip]
        self._last[vip] = counters
        if last is None:
            return
        slot = min(max(slot, 0), self.slots - 1)
        for name, value in counters.items():
            before = last.get(name, 0.0)
            increase = value - before if value >= before else value
            series = self.increases[vip].setdefault(name, [0.0] * self.slots)
            series[slot] += increase
            self.totals[vip][name] = self.totals[vip].get(name, 0.0) + increase

    def series(self, vip: str, name: str) -> list[float]:
        return self.increases[vip].get(name, [0.0] * self.slots)

    def total(self, name: str, vip: str | None = None) -> float:
        """A counter's increase since the baseline, for one VIP's proxy or both."""
        vips = VIPS if vip is None else (vip,)
        return sum(self.totals[v].get(name, 0.0) for v in vips)


@dataclass
class RunResult:
    """What one policy's run measured (plain data, for the analysis and the report)."""

    policy: Policy
    recorder: Recorder
    proxies: ProxySeries
