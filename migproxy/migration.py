# Automatic migration epochs (#5): sample the DNS answers of the name clients resolve (the
# GSLB name, [migration] watch_name), measure the share that points at this VIP
# (vip_addresses), and start a new epoch when that share moves.
#
# Rules:
# - The decision is pure (Sample, Baseline, observe: counts in, a new baseline and maybe an
#   epoch out) and tested without I/O. EpochWatcher only queries and applies, and reads the
#   configuration in force at each sample, so a reload changes the watch without a restart.
# - Every query reaches the name server: no resolver cache, since a GSLB answers each query
#   differently. (A caching resolver in between answers from its cache until the TTL ends:
#   point nameservers at the GSLB's own servers.)
# - A move is a new epoch only when it is at least share_change AND well beyond sampling noise
#   (a z-test, Z_THRESHOLD), in two samples in a row. The noise is large: with 20 one-address
#   answers of a steady 50/50 split, two samples out of three differ from the baseline by
#   0.05 or more, and every epoch costs one reconnect per client connection.
# - A failed sample (timeouts, SERVFAIL, NXDOMAIN, no address) changes nothing: it is counted,
#   and logged once per streak of failures.
# - With upstream/resolver.py (whose helpers it reuses), the only module of the proxy that
#   imports dnspython.
from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from migproxy.config import Address, MigrationConfig
from migproxy.proxy import ProxyContext
from migproxy.stats import DnsSample
from migproxy.upstream.resolver import (
    AAAA,
    A,
    Answer,
    DNSException,
    LookupFailed,
    RdataType,
    describe,
    new_resolver,
    query,
)

log = logging.getLogger("migproxy")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# A change must lie this many standard errors beyond the baseline, in each of two samples in
# a row. Simulated on a steady 50/50 split, 20 answers a sample: a false epoch about once in
# 150,000 samples (ten days at the default sample_interval of 5 s), where share_change alone
# starts one every other sample. A move from 50% to 0% starts one at the 2nd sample; from 50%
# to 20%, at the 10th or so (at the 2nd with samples = 50: more queries see smaller moves).
Z_THRESHOLD = 3.0
# The baseline pools the first samples of an epoch (the first one alone is as noisy as any),
# then stays: a slow drift away from the epoch's share is a change too.
BASELINE_SAMPLES = 10
SHARE_EPSILON = 1e-9  # float sums of shares: 0.95 - 1.0 is -0.05000000000000004
MAX_PARALLEL_QUERIES = 10  # queries in flight at once, per sample
QUERY_TIMEOUT = 2.0  # seconds per query at most (less when sample_interval is shorter)
IDLE_POLL = 1.0  # seconds between two looks at the config while no name is watched


# The decision: pure


@dataclass(frozen=True, slots=True)
class Sample:
    """The answers of some queries, reduced to what the change rule needs.

    Each answer counts as one unit: the share of its addresses that are this VIP's (0 or 1
    for a GSLB's one-address answers). Units, not addresses, because the addresses of one
    answer are not drawn independently: a name answering both VIPs every time has a share of
    exactly 0.5 and no noise at all.
    """

    answers: int  # answers holding at least one address
    share_sum: float  # the sum of their shares
    square_sum: float  # the sum of their squared shares (for the variance)
    ttl: float  # the largest TTL among them: clients may cache an answer that long

    @property
    def share(self) -> float:
        """The share of this VIP, the mean over the answers (the share of the returned
        addresses, when every answer holds as many)."""
        return self.share_sum / self.answers

    def __add__(self, other: Sample) -> Sample:
        return Sample(
            self.answers + other.answers,
            self.share_sum + other.share_sum,
            self.square_sum + other.square_sum,
            max(self.ttl, other.ttl),
        )


def tally(results: Sequence[Answer | BaseException], vip: frozenset[IPAddress]) -> Sample:
    """One sample from the outcome of its queries: (addresses, TTL) or the error raised.

    A sample needs at least half of its queries answered and one address in all: an
    occasional lost datagram does not void it, an outage does. NODATA answers (no record of
    the asked family) count as answered but hold no unit.

    Raises:
        LookupFailed: the sample failed, with the first query's failure as the reason.
    """
    answered = [result for result in results if not isinstance(result, BaseException)]
    errors = [result for result in results if isinstance(result, BaseException)]
    if not results or len(answered) * 2 < len(results):
        reason = describe(errors[0]) if errors else "no query"
        raise LookupFailed(f"{reason} ({len(errors)} of {len(results)} queries failed)")
    shares = [share_of(found, vip) for found, _ in answered if found]
    if not shares:
        raise LookupFailed("no A or AAAA records")
    return Sample(
        answers=len(shares),
        share_sum=sum(shares),
        square_sum=sum(share * share for share in shares),
        ttl=max(ttl for found, ttl in answered if found),
    )


def share_of(addresses: Iterable[str], vip: frozenset[IPAddress]) -> float:
    """The share of `addresses` (not empty) that are in `vip`."""
    parsed = [ipaddress.ip_address(address) for address in addresses]
    return sum(address in vip for address in parsed) / len(parsed)


def z_score(baseline: Sample, sample: Sample) -> float:
    """How many standard errors `sample`'s share lies from `baseline`'s, supposing both are
    drawn from one share (a two-sample z-test, the variance taken over both together): large
    when the share has moved, small when the difference is sampling noise."""
    answers = baseline.answers + sample.answers
    mean = (baseline.share_sum + sample.share_sum) / answers
    variance = max(0.0, (baseline.square_sum + sample.square_sum) / answers - mean * mean)
    difference = abs(sample.share - baseline.share)
    if variance == 0.0:  # every answer alike: no noise
        return 0.0 if difference < SHARE_EPSILON else math.inf
    return difference / math.sqrt(variance * (1 / baseline.answers + 1 / sample.answers))


def shift(baseline: Sample, sample: Sample, share_change: float) -> int:
    """+1 or -1 when `sample`'s share moved up or down from `baseline`'s by share_change or
    more and beyond noise, else 0."""
    difference = sample.share - baseline.share
    if abs(difference) < share_change - SHARE_EPSILON:
        return 0
    if z_score(baseline, sample) < Z_THRESHOLD:
        return 0
    return 1 if difference > 0 else -1


@dataclass(frozen=True, slots=True)
class Baseline:
    """The share of the current epoch, and a move waiting for its confirming sample."""

    sample: Sample  # the epoch's first samples, pooled
    samples: int  # how many are pooled, up to BASELINE_SAMPLES
    pending: Sample | None = None  # a sample that moved, waiting for the next one
    direction: int = 0  # its direction, +1 or -1


@dataclass(frozen=True, slots=True)
class Step:
    """What one sample does: the baseline from now on, and the share of the new epoch if it
    starts one (then also the new baseline)."""

    baseline: Baseline
    epoch: Sample | None = None


def observe(baseline: Baseline | None, sample: Sample, share_change: float) -> Step:
    """Apply the change rule to one successful sample.

    The first sample only sets the baseline. A sample that moved (see `shift`) starts an
    epoch when the one before moved the same way; the two together become the new baseline.
    A sample that did not move cancels a pending move, and is pooled into the baseline while
    it holds fewer than BASELINE_SAMPLES.
    """
    if baseline is None:
        return Step(Baseline(sample, 1))
    direction = shift(baseline.sample, sample, share_change)
    if direction == 0:
        if baseline.samples >= BASELINE_SAMPLES:
            return Step(Baseline(baseline.sample, baseline.samples))
        return Step(Baseline(baseline.sample + sample, baseline.samples + 1))
    if baseline.pending is not None and direction == baseline.direction:
        moved = baseline.pending + sample
        return Step(Baseline(moved, 2), epoch=moved)
    return Step(dataclasses.replace(baseline, pending=sample, direction=direction))


def query_types(vip_addresses: Iterable[str]) -> tuple[RdataType, ...]:
    """The record types to ask: A for an IPv4 VIP, AAAA for an IPv6 one, both alternately
    for a dual-stack VIP (an answer of a family the VIP lacks never points at it)."""
    versions = {ipaddress.ip_address(address).version for address in vip_addresses}
    return tuple(rdtype for version, rdtype in ((4, A), (6, AAAA)) if version in versions)


# The I/O


class EpochWatcher:
    """Samples [migration] watch_name and starts epochs on `ctx` (see the module header).

    It runs whether or not a name is watched: while `ctx.config.migration.watch_name` is ""
    it only looks at the config now and then, so a reload can start (or stop) the watch.
    """

    __slots__ = ("ctx", "_task", "_watch", "_baseline", "_failures")

    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx
        self._task: asyncio.Task[None] | None = None
        self._watch: tuple[str, tuple[str, ...], tuple[Address, ...]] | None = None
        self._baseline: Baseline | None = None
        self._failures = 0  # failed samples in a row

    def start(self) -> None:
        """Start sampling in a background task, on `ctx`'s loop.

        Raises:
            RuntimeError: already started.
        """
        if self._task is not None:
            raise RuntimeError("the migration watch is already started")
        self._task = self.ctx.loop.create_task(self._run())
        self._task.add_done_callback(_log_crash)

    async def stop(self) -> None:
        """Stop sampling; a sample in flight is abandoned."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    async def _run(self) -> None:
        loop = self.ctx.loop
        while True:
            migration = self.ctx.config.migration
            if not migration.watch_name:
                self._follow(None)
                await asyncio.sleep(min(IDLE_POLL, migration.sample_interval))
                continue
            started = loop.time()
            await self.sample(migration)
            await asyncio.sleep(max(0.0, started + migration.sample_interval - loop.time()))

    async def sample(self, migration: MigrationConfig) -> None:
        """Take one sample of `migration.watch_name` and start the epoch it calls for."""
        self._follow(migration)
        vip = frozenset(ipaddress.ip_address(address) for address in migration.vip_addresses)
        try:
            sample = tally(await self._query(migration), vip)
        except LookupFailed as err:
            self._failed(migration.watch_name, str(err))
        else:
            self._answered(migration, sample)

    def _follow(self, migration: MigrationConfig | None) -> None:
        """Start afresh (no baseline) when the watched name, VIP or name servers change."""
        watch = (
            None
            if migration is None
            else (migration.watch_name, migration.vip_addresses, migration.nameservers)
        )
        if watch == self._watch:
            return
        self._watch, self._baseline, self._failures = watch, None, 0
        self.ctx.stats.dns_share = math.nan
        if migration is not None:
            log.info(
                "migration watch %s: sampling its answers for %s every %g s",
                migration.watch_name,
                ", ".join(migration.vip_addresses),
                migration.sample_interval,
            )

    async def _query(self, migration: MigrationConfig) -> list[Answer | BaseException]:
        """`migration.samples` queries, at most MAX_PARALLEL_QUERIES at a time.

        Raises:
            LookupFailed: no resolver (no name server in /etc/resolv.conf).
        """
        try:
            timeout = min(QUERY_TIMEOUT, migration.sample_interval)
            resolver = new_resolver(migration.nameservers, timeout)
        except DNSException as err:
            raise LookupFailed(describe(err)) from None
        types = query_types(migration.vip_addresses)
        limit = asyncio.Semaphore(MAX_PARALLEL_QUERIES)
        search = not migration.nameservers

        async def one(rdtype: RdataType) -> Answer | BaseException:
            async with limit:
                try:
                    return await query(resolver, migration.watch_name, rdtype, search=search)
                except (DNSException, OSError) as err:
                    return err

        queries = (one(types[index % len(types)]) for index in range(migration.samples))
        return list(await asyncio.gather(*queries))

    def _answered(self, migration: MigrationConfig, sample: Sample) -> None:
        ctx, name = self.ctx, migration.watch_name
        ctx.stats.count_dns_sample(DnsSample.OK)
        ctx.stats.dns_share = sample.share
        if self._failures:
            log.warning(
                "migration watch %s: DNS answers again after %d failed samples",
                name,
                self._failures,
            )
            self._failures = 0
        old, step = self._baseline, observe(self._baseline, sample, migration.share_change)
        self._baseline = step.baseline
        if old is None:
            log.info(
                "migration watch %s: %.1f%% of %d answers point at this VIP (the baseline)",
                name,
                100 * sample.share,
                sample.answers,
            )
        elif step.epoch is not None:
            log.info(
                "migration watch %s: the share of answers pointing at this VIP moved from "
                "%.1f%% to %.1f%%: a new epoch",
                name,
                100 * old.sample.share,
                100 * step.epoch.share,
            )
            now = ctx.loop.time() + ctx.wall_offset
            closes_from = now + step.epoch.ttl if migration.start_after_ttl else None
            self.ctx.set_epoch(now, closes_from)

    def _failed(self, name: str, reason: str) -> None:
        self.ctx.stats.count_dns_sample(DnsSample.ERROR)
        self._failures += 1
        if self._failures == 1:
            log.warning(
                "migration watch %s: DNS sample failed: %s; no epoch starts until it answers",
                name,
                reason,
            )


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("migration watch stopped by an error", exc_info=task.exception())
