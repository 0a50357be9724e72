# Which address of the upstream name gets the next request: pure bookkeeping, no I/O.
#
# The upstream name resolves to a set of addresses (a DNS answer, or one IP literal). Each
# address is a Backend with its own idle pool and a count of the exchanges in flight to it.
# The Balancer keeps the backends that are eligible for new requests: in the current answer
# and not ejected by the health checks. The caller (ProxyContext) does the I/O the changes
# call for: closing the idle connections of a removed or ejected backend, starting and
# stopping health checks.
#
# Rules:
# - An address that leaves the answer is retired at once: no new request goes there; its idle
#   connections are closed by the caller, its busy ones when their exchange ends.
# - When every address is ejected, "fail open" keeps them all eligible (a health check that
#   fails everywhere at once is more likely the checker's or the network's fault than every
#   backend's), and "reject" leaves none, so requests get a 503.
from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from migproxy.upstream.pool import IdlePool, Poolable

LEAST_OUTSTANDING = "least_outstanding"
ROUND_ROBIN = "round_robin"

C = TypeVar("C", bound=Poolable)


class Backend(Generic[C]):
    """One address of the upstream: its idle connections and its load."""

    __slots__ = ("host", "port", "pool", "outstanding", "healthy", "eligible", "retired")

    def __init__(self, host: str, port: int, max_idle: int, idle_timeout: float) -> None:
        self.host = host
        self.port = port
        self.pool: IdlePool[C] = IdlePool(max_idle, idle_timeout)
        self.outstanding = 0  # exchanges in flight to this address, connecting ones included
        self.healthy = True  # as the health checks last judged it (True without checks)
        self.eligible = True  # new requests may go here (kept by Balancer)
        self.retired = False  # left the DNS answer: never used again

    @property
    def label(self) -> str:
        """host:port, with brackets around an IPv6 host."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        state = "retired" if self.retired else ("up" if self.healthy else "ejected")
        return (
            f"<Backend {self.label} {state} outstanding={self.outstanding} idle={len(self.pool)}>"
        )


class Balancer(Generic[C]):
    """The backends of one upstream name, and the choice among them."""

    __slots__ = (
        "port",
        "mode",
        "round_robin",
        "fail_open",
        "max_idle",
        "idle_timeout",
        "backends",
        "all_down",
        "only",
        "_ready",
        "_turn",
    )

    def __init__(
        self, port: int, mode: str, *, fail_open: bool, max_idle: int, idle_timeout: float
    ) -> None:
        if mode not in (LEAST_OUTSTANDING, ROUND_ROBIN):
            raise ValueError(f"unknown balance mode {mode!r}")
        self.port = port
        self.mode = mode
        self.round_robin = mode == ROUND_ROBIN
        self.fail_open = fail_open
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.backends: dict[str, Backend[C]] = {}  # by host, in answer order
        self.all_down = False  # every backend is ejected
        # The one eligible backend when there is exactly one (the common IP-literal case):
        # what pick() would return, read by the data path without a call.
        self.only: Backend[C] | None = None
        self._ready: list[Backend[C]] = []  # eligible backends
        self._turn = 0  # round-robin position

    def update(self, hosts: Iterable[str]) -> tuple[list[Backend[C]], list[Backend[C]]]:
        """Make `hosts` the current answer; return the backends (added, removed).

        Removed backends are marked retired: the caller closes their idle connections, and
        their busy connections close when their exchange ends.
        """
        wanted = list(dict.fromkeys(hosts))
        removed = [b for host, b in self.backends.items() if host not in wanted]
        added = []
        backends: dict[str, Backend[C]] = {}
        for host in wanted:
            backend = self.backends.get(host)
            if backend is None:
                backend = Backend(host, self.port, self.max_idle, self.idle_timeout)
                added.append(backend)
            backends[host] = backend
        for backend in removed:
            backend.retired = True
            backend.eligible = False
        self.backends = backends
        self._recompute()
        return added, removed

    def set_healthy(self, backend: Backend[C], healthy: bool) -> None:
        """Record a health-check transition of `backend`."""
        backend.healthy = healthy
        self._recompute()

    def pick(self) -> Backend[C] | None:
        """The backend for a new request, or None when no address may be used."""
        ready = self._ready
        count = len(ready)
        if count == 1:
            return ready[0]
        if count == 0:
            return None
        turn = self._turn = (self._turn + 1) % count
        if self.round_robin:
            return ready[turn]
        # Least outstanding; starting the scan at the round-robin position spreads ties.
        best = ready[turn]
        for offset in range(1, count):
            candidate = ready[(turn + offset) % count]
            if candidate.outstanding < best.outstanding:
                best = candidate
        return best

    def _recompute(self) -> None:
        current = list(self.backends.values())
        healthy = [b for b in current if b.healthy]
        self.all_down = bool(current) and not healthy
        if self.all_down and self.fail_open:
            healthy = current
        for backend in current:
            backend.eligible = False
        for backend in healthy:
            backend.eligible = True
        self._ready = healthy
        self.only = healthy[0] if len(healthy) == 1 else None
        self._turn = 0

    def __len__(self) -> int:
        return len(self.backends)

    def __repr__(self) -> str:
        return f"<Balancer {self.mode} {list(self.backends.values())}>"
