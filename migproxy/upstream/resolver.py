# Resolution of the upstream name, following DNS (#4), and the dnspython adapter of the whole
# proxy: the only module of it that imports dnspython (migproxy/dnsserver.py, the name server
# of the tests and the lab, is the other user). migration.py samples a name through
# new_resolver() and query().
#
# Rules:
# - The TTL of every answer is honored, clamped to [min_ttl, max_ttl]. The name is looked up
#   again in the background before the answer expires, and never on the request path while a
#   fresh answer exists. Concurrent lookups are merged into one.
# - When lookups fail, the last good answer is still served for stale_ttl seconds after it
#   expired (RFC 8767's serve-stale), then it is dropped and callers get ResolveError. Every
#   failure counts alike (timeout, SERVFAIL, NXDOMAIN, no address): a name that vanishes from
#   its zone is far more often a broken zone update than a request to stop the proxy.
# - An IP literal is never looked up. Without configured name servers, /etc/hosts comes
#   first, as in the C library's resolver (dnspython does not read it): `localhost:8081`
#   must work.
# - Time is the event loop's clock. The policy (addresses.py: AnswerCache and its helpers) is
#   pure and takes `now`; UpstreamResolver does the I/O.
from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
from collections.abc import Callable, Sequence

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from migproxy.config import Address
from migproxy.errors import UpstreamError
from migproxy.stats import Resolution, Stats
from migproxy.upstream.addresses import (
    HOSTS_PATH,
    AnswerCache,
    hosts_addresses,
    sort_addresses,
)

log = logging.getLogger("migproxy")

Answer = tuple[tuple[str, ...], float]  # addresses and TTL of one query type
OnChange = Callable[[tuple[str, ...]], None]


class ResolveError(UpstreamError):
    """The upstream name has no usable addresses: the lookup failed and no answer (fresh, or
    stale within stale_ttl) is left."""

    kind = "resolve"  # a metric label: metrics.UPSTREAM_ERROR_KINDS must list it
    status = 503

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"cannot resolve {host}: {reason}")
        self.host = host
        self.reason = reason


class LookupFailed(Exception):
    """One lookup of the name failed; str() is the reason, for logs and ResolveError."""


def union_of(results: Sequence[Answer | BaseException]) -> Answer:
    """One answer from the A and AAAA lookups: the union of their addresses, with the shorter
    TTL of those that hold addresses. A failed query type is left out; only when no address
    is left does the whole lookup fail.

    Raises:
        LookupFailed: no address, with the first query's failure as the reason.
    """
    answers = [result for result in results if not isinstance(result, BaseException)]
    addresses = sort_addresses(address for found, _ in answers for address in found)
    if not addresses:
        errors = [result for result in results if isinstance(result, BaseException)]
        raise LookupFailed(describe(errors[0]) if errors else "no A or AAAA records")
    return addresses, min(ttl for found, ttl in answers if found)


def describe(err: BaseException) -> str:
    """A short reason for a failed query, for one log line."""
    if isinstance(err, dns.resolver.NXDOMAIN):
        return "no such name (NXDOMAIN)"
    if isinstance(err, dns.exception.Timeout):
        return "timed out"
    if isinstance(err, dns.resolver.NoNameservers):
        # each error is (server, tcp, port, exception or rcode text, response)
        causes = sorted({str(error[3]) for error in err.kwargs.get("errors", ())})
        return "no name server answered" + (f" ({', '.join(causes)})" if causes else "")
    if isinstance(err, dns.resolver.NoResolverConfiguration):
        return "no name servers in /etc/resolv.conf"
    return f"{type(err).__name__}: {err}"


# The dnspython names the rest of the proxy uses, so that it need not import dnspython.
DnsResolver = dns.asyncresolver.Resolver
RdataType = dns.rdatatype.RdataType
DNSException = dns.exception.DNSException
A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA


def new_resolver(nameservers: tuple[Address, ...], timeout: float) -> dns.asyncresolver.Resolver:
    """dnspython's resolver on `nameservers` (() = /etc/resolv.conf's), giving up on a
    query after `timeout` seconds. It has no cache: every query reaches a name server (the
    callers keep answers for their TTL themselves, or must see every answer of a GSLB).

    Raises:
        dns.resolver.NoResolverConfiguration: no name server in /etc/resolv.conf.
    """
    resolver = dns.asyncresolver.Resolver(configure=not nameservers)
    if nameservers:
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(server.host, server.port) for server in nameservers
        ]
    resolver.cache = None
    resolver.lifetime = timeout
    # Half of it per attempt: a lost datagram is sent again (or the next server asked) once
    # before the query gives up.
    resolver.timeout = timeout / 2
    return resolver


async def query(
    resolver: dns.asyncresolver.Resolver, name: str, rdtype: RdataType, *, search: bool
) -> Answer:
    """One query: the answer's addresses and TTL (none and inf for NODATA).

    `search`: apply /etc/resolv.conf's search list (as the C library does with the system's
    name servers; configured ones get the name as written).

    Raises:
        DNSException: it failed (timeout, SERVFAIL, NXDOMAIN...).
    """
    answer = await resolver.resolve(name, rdtype, search=search, raise_on_no_answer=False)
    if answer.rrset is None:  # NODATA
        return (), math.inf
    # the shortest TTL along a CNAME chain, not only the last record's: how long a client
    # may cache this answer
    return tuple(str(rdata) for rdata in answer.rrset), answer.chaining_result.minimum_ttl


class UpstreamResolver:
    """The addresses of one upstream host name, kept current by a background task.

    Attributes:
        host: the name (or IP literal) as configured.
        stats: where each lookup's Resolution is counted.
    """

    __slots__ = (
        "host",
        "stats",
        "_loop",
        "_nameservers",
        "_timeout",
        "_hosts_path",
        "_fixed",
        "_cache",
        "_dns",
        "_lookup_task",
        "_refresh_task",
        "_on_change",
        "_published",
        "_serving_stale",
        "_last_error",
    )

    def __init__(
        self,
        host: str,
        *,
        nameservers: tuple[Address, ...],
        min_ttl: float,
        max_ttl: float,
        stale_ttl: float,
        stats: Stats,
        timeout: float = 2.0,
        loop: asyncio.AbstractEventLoop | None = None,
        hosts_path: str = HOSTS_PATH,
    ) -> None:
        """Look up nothing yet: `resolve` and `start` do.

        Args:
            host: a DNS name or an IP literal (which is never looked up).
            nameservers: the name servers to ask; () means those of /etc/resolv.conf, with
                `hosts_path` consulted first.
            min_ttl, max_ttl: the bounds of the TTL an answer is used for.
            stale_ttl: how long after its expiry an answer is still served while lookups fail.
            stats: where the outcome of each lookup is counted.
            timeout: seconds one lookup may take, every server and retransmission included.
            loop: the loop whose clock and tasks are used (default: the running loop).
            hosts_path: the hosts file (a parameter for the tests).
        """
        self.host = host
        self.stats = stats
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._nameservers = nameservers
        self._timeout = timeout
        self._hosts_path = hosts_path
        self._fixed = _ip_literal(host)
        self._cache = AnswerCache(min_ttl, max_ttl, stale_ttl)
        self._dns: dns.asyncresolver.Resolver | None = None
        self._lookup_task: asyncio.Task[None] | None = None
        self._refresh_task: asyncio.Task[None] | None = None
        self._on_change: OnChange | None = None
        self._published = self._fixed
        self._serving_stale = False
        self._last_error = ""

    @property
    def addresses(self) -> tuple[str, ...]:
        """The addresses in use now (sorted, IPv4 first); () before the first answer and once
        the last one has outlived its stale time."""
        return self._fixed or self._cache.usable(self._loop.time())

    @property
    def ttl(self) -> float:
        """Seconds the last answer is used for (its TTL, clamped); 0.0 before the first
        answer, inf for an IP literal."""
        return math.inf if self._fixed else self._cache.ttl

    async def resolve(self) -> tuple[str, ...]:
        """The addresses to connect to. Waits for a lookup only when no fresh answer exists
        and no stale one may be served meanwhile; joins the lookup in flight, if any.

        Raises:
            ResolveError: the lookup failed and no usable answer is left.
        """
        if self._fixed:
            return self._fixed
        cache = self._cache
        now = self._loop.time()
        # An expired answer still within its stale time is served without waiting while the
        # name is being looked up again anyway: by the lookup in flight, or by the background
        # task on its schedule (after a failure, the retries).
        busy = self._lookup_task is not None or self._refresh_task is not None
        if cache.is_fresh(now) or (busy and cache.is_stale(now)):
            return cache.addresses
        # asyncio.wait neither cancels the shared lookup when this caller is cancelled nor
        # raises its outcome, which the lookup has already recorded in the cache.
        await asyncio.wait({self._lookup()})
        addresses = cache.usable(self._loop.time())
        if not addresses:
            raise ResolveError(self.host, self._last_error or "lookup cancelled")
        return addresses

    def start(self, on_change: OnChange) -> None:
        """Keep the answer current in a background task; call `on_change` with the new
        addresses whenever the set changes (to () when it is dropped). `on_change` must not
        raise. An IP literal never changes: no task is started.

        Raises:
            RuntimeError: already started.
        """
        if self._on_change is not None:
            raise RuntimeError(f"resolver for {self.host} already started")
        self._on_change = on_change
        if not self._fixed:
            self._refresh_task = self._loop.create_task(self._refresh_forever())

    async def stop(self) -> None:
        """Stop the background task and the lookup in flight."""
        tasks = {task for task in (self._refresh_task, self._lookup_task) if task is not None}
        self._refresh_task = self._lookup_task = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _refresh_forever(self) -> None:
        while True:
            delay = self._cache.next_lookup_at() - self._loop.time()
            if delay > 0:
                # then look again: a lookup made meanwhile by resolve() moves the time
                await asyncio.sleep(delay)
                continue
            await asyncio.wait({self._lookup()})

    def _lookup(self) -> asyncio.Task[None]:
        """The lookup in flight, started if there is none."""
        if self._lookup_task is None:
            self._lookup_task = self._loop.create_task(self._look_up())
        return self._lookup_task

    async def _look_up(self) -> None:
        try:
            try:
                addresses, ttl = await self._query()
            except LookupFailed as err:
                self._failed(str(err))
            else:
                self._answered(addresses, ttl)
        finally:
            if self._lookup_task is asyncio.current_task():  # stop() may have forgotten it
                self._lookup_task = None

    async def _query(self) -> Answer:
        """One lookup: /etc/hosts, else A and AAAA at once.

        Raises:
            LookupFailed: no address.
        """
        if not self._nameservers:
            hosts = hosts_addresses(_read_text(self._hosts_path), self.host)
            if hosts:
                return hosts, self._cache.max_ttl
        try:
            if self._dns is None:
                # made at the first DNS lookup, so that a missing /etc/resolv.conf fails
                # lookups, not the start-up of a proxy whose name is in /etc/hosts
                self._dns = new_resolver(self._nameservers, self._timeout)
        except DNSException as err:
            raise LookupFailed(describe(err)) from None
        search = not self._nameservers
        results = await asyncio.gather(
            query(self._dns, self.host, A, search=search),
            query(self._dns, self.host, AAAA, search=search),
            return_exceptions=True,
        )
        return union_of(results)

    def _answered(self, addresses: tuple[str, ...], ttl: float) -> None:
        self.stats.count_resolution(Resolution.OK)
        self._cache.record_answer(addresses, ttl, self._loop.time())
        if self._serving_stale:
            self._serving_stale = False
            log.warning("upstream %s: DNS answers again; the stale answer is retired", self.host)
        self._publish()

    def _failed(self, reason: str) -> None:
        cache, now = self._cache, self._loop.time()
        self.stats.count_resolution(Resolution.ERROR)
        cache.record_failure(now)
        self._last_error = reason
        log.warning("upstream %s: DNS lookup failed: %s", self.host, reason)
        if cache.is_stale(now):
            self.stats.count_resolution(Resolution.STALE_SERVED)
            if not self._serving_stale:
                self._serving_stale = True
                log.warning(
                    "upstream %s: serving the expired DNS answer for up to %.0f s more (%s)",
                    self.host,
                    cache.stale_until - now,
                    reason,
                )
        elif self._serving_stale:
            self._serving_stale = False
            log.warning(
                "upstream %s: the expired DNS answer is dropped, stale_ttl %g s passed (%s)",
                self.host,
                cache.stale_ttl,
                reason,
            )
        self._publish()

    def _publish(self) -> None:
        addresses = self._cache.usable(self._loop.time())
        if addresses != self._published:
            self._published = addresses
            if self._on_change is not None:
                self._on_change(addresses)


def _ip_literal(host: str) -> tuple[str, ...]:
    """(host,) normalized when it is an IP address, else ()."""
    try:
        return (str(ipaddress.ip_address(host)),)
    except ValueError:
        return ()


def _read_text(path: str) -> str:
    # A small local file, read at most once a second: reading it synchronously costs less
    # than handing it to a thread.
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return file.read()
    except OSError:  # no hosts file: no entries
        return ""
