# `migproxy watch URL...`: a live terminal view of a migration's convergence, scraped from one or
# more proxies' admin /metrics (DESIGN.md §4).
#
# The pure part needs no socket and is what the unit tests drive: parse() turns an exposition into
# a small Snapshot, rates() turns two snapshots into per-second Rates (like Prometheus' rate(): the
# increase over the time between the scrapes, a counter that went down counting from zero),
# halves()/direction() give the stale-share trend over the last few snapshots, and render() turns
# the watched targets into lines. The thin loop at the bottom scrapes every URL with aiohttp
# (bounded by a timeout), keeps the last TREND_SAMPLES snapshots per URL and redraws: ANSI
# clear-screen on a TTY, plain appended snapshots otherwise.
from __future__ import annotations

import argparse
import asyncio
import errno
import os
import sys
import time
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

K = TypeVar("K")
RequestKey = tuple[str, str, str]  # (vip, connection "fresh"|"reused", cohort "stale"|"current")

TREND_SAMPLES = 5  # snapshots kept per URL: the trend compares the first and second half
TREND_THRESHOLD = 0.01  # a stale share that moved by less than one point is "flat"
BAR_WIDTH = 24
MAX_TIMEOUT = 5.0  # seconds a scrape may take, at most (the interval, when shorter, down to 1 s)
CLEAR = "\x1b[H\x1b[2J"
UNICODE_GLYPHS = ("█", "░")
ASCII_GLYPHS = ("#", ".")


@dataclass(frozen=True)
class Snapshot:
    """One scrape of one proxy: counters as exposed (cumulative), gauges as of the scrape."""

    taken: float  # time.monotonic() when the scrape answered
    vips: tuple[str, ...]  # every `vip` label value, in order of appearance
    requests: Mapping[RequestKey, float]  # summed over status_class
    closes: Mapping[str, float]  # client connections closed, by reason
    injected: Mapping[str, float]  # injected closes, by policy
    active: Mapping[str, float]  # client connections open, by cohort
    ratio: float | None  # configured close ratio (the largest, should a proxy expose several)
    epoch: float  # start of the migration epoch, Unix time; 0: none


@dataclass
class _Accumulator:
    vips: dict[str, None] = field(default_factory=dict)  # an ordered set
    requests: defaultdict[RequestKey, float] = field(default_factory=lambda: defaultdict(float))
    closes: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    injected: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    active: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    ratio: float | None = None
    epoch: float = 0.0

    def add(self, name: str, labels: Mapping[str, str], value: float) -> None:
        if not name.startswith("migproxy_"):
            return
        vip = labels.get("vip", "?")
        self.vips[vip] = None
        if name == "migproxy_requests_total":
            key = (vip, labels.get("connection", "?"), labels.get("cohort", "?"))
            self.requests[key] += value
        elif name == "migproxy_connections_closed_total":
            self.closes[labels.get("reason", "?")] += value
        elif name == "migproxy_injected_closes_total":
            self.injected[labels.get("policy", "?")] += value
        elif name == "migproxy_connections_active":
            self.active[labels.get("cohort", "?")] += value
        elif name == "migproxy_close_ratio":
            self.ratio = value if self.ratio is None else max(self.ratio, value)
        elif name == "migproxy_migration_epoch_timestamp_seconds":
            self.epoch = max(self.epoch, value)


def parse(text: str, taken: float) -> Snapshot:
    """The migproxy series of one /metrics exposition (ValueError when it is not one)."""
    acc = _Accumulator()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            acc.add(sample.name, sample.labels, sample.value)
    return Snapshot(
        taken=taken,
        vips=tuple(acc.vips),
        requests=dict(acc.requests),
        closes=dict(acc.closes),
        injected=dict(acc.injected),
        active=dict(acc.active),
        ratio=acc.ratio,
        epoch=acc.epoch,
    )


@dataclass(frozen=True)
class Rates:
    """Per-second rates between two snapshots of one proxy, or their sum over proxies."""

    requests: float = 0.0
    reused: float = 0.0
    stale: float = 0.0
    by_vip: Mapping[str, float] = field(default_factory=dict)
    closes: Mapping[str, float] = field(default_factory=dict)  # by reason
    injected: float = 0.0

    @property
    def reused_share(self) -> float | None:
        return self.reused / self.requests if self.requests > 0 else None

    @property
    def stale_share(self) -> float | None:
        return self.stale / self.requests if self.requests > 0 else None

    def __add__(self, other: Rates) -> Rates:
        return Rates(
            requests=self.requests + other.requests,
            reused=self.reused + other.reused,
            stale=self.stale + other.stale,
            by_vip=_add_maps(self.by_vip, other.by_vip),
            closes=_add_maps(self.closes, other.closes),
            injected=self.injected + other.injected,
        )


def _add_maps(a: Mapping[K, float], b: Mapping[K, float]) -> dict[K, float]:
    out = dict(a)
    for key, value in b.items():
        out[key] = out.get(key, 0.0) + value
    return out


def _increases(older: Mapping[K, float], newer: Mapping[K, float]) -> dict[K, float]:
    """Counter increases; a counter that went down (its proxy restarted) counts from zero."""
    out = {}
    for key, value in newer.items():
        before = older.get(key, 0.0)
        out[key] = value - before if value >= before else value
    return out


def rates(older: Snapshot, newer: Snapshot) -> Rates:
    """What happened per second between two scrapes of the same proxy."""
    seconds = newer.taken - older.taken
    if seconds <= 0:
        return Rates()
    requests = _increases(older.requests, newer.requests)
    by_vip: defaultdict[str, float] = defaultdict(float)
    for (vip, _, _), count in requests.items():
        by_vip[vip] += count / seconds
    closes = _increases(older.closes, newer.closes)
    return Rates(
        requests=sum(requests.values()) / seconds,
        reused=sum(n for (_, conn, _), n in requests.items() if conn == "reused") / seconds,
        stale=sum(n for (_, _, cohort), n in requests.items() if cohort == "stale") / seconds,
        by_vip=dict(by_vip),
        closes={reason: count / seconds for reason, count in closes.items()},
        injected=sum(_increases(older.injected, newer.injected).values()) / seconds,
    )


Halves = tuple[Rates, Rates]


def halves(history: Sequence[Snapshot]) -> Halves | None:
    """Rates over the first and the second half of `history` (None: under three snapshots)."""
    if len(history) < 3:
        return None
    mid = len(history) // 2
    return rates(history[0], history[mid]), rates(history[mid], history[-1])


def sum_halves(each: Sequence[Halves | None]) -> Halves | None:
    """The halves of several proxies added up (those without enough snapshots left out)."""
    known = [h for h in each if h is not None]
    if not known:
        return None
    return sum((h[0] for h in known), Rates()), sum((h[1] for h in known), Rates())


def direction(pair: Halves | None) -> str:
    """How the stale share moved from the first half to the second: rising, falling, flat."""
    if pair is None:
        return "n/a"
    early, late = pair[0].stale_share, pair[1].stale_share
    if early is None or late is None:
        return "n/a"
    if late - early > TREND_THRESHOLD:
        return "rising"
    if early - late > TREND_THRESHOLD:
        return "falling"
    return "flat"


@dataclass
class Target:
    """One watched URL: its last few snapshots and the failure of its latest scrape, if any."""

    url: str
    history: deque[Snapshot] = field(default_factory=lambda: deque(maxlen=TREND_SAMPLES))
    error: str | None = None  # e.g. "unreachable (connection refused)"

    @property
    def measured(self) -> bool:
        return self.error is None and len(self.history) >= 2

    def current(self) -> Rates:
        return rates(self.history[-2], self.history[-1])


def bar(share: float, width: int = BAR_WIDTH, glyphs: tuple[str, str] = UNICODE_GLYPHS) -> str:
    filled = round(min(max(share, 0.0), 1.0) * width)
    return glyphs[0] * filled + glyphs[1] * (width - filled)


def _pct(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.0%}"


def _age(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _rate_lines(r: Rates, trend: str) -> list[str]:
    fresh = None if r.reused_share is None else 1.0 - r.reused_share
    closes = sorted(((n, reason) for reason, n in r.closes.items() if n > 0), reverse=True)
    by_reason = "  ".join(f"{reason} {n:.1f}" for n, reason in closes) or "none"
    return [
        f"  requests {r.requests:.1f}/s  reused {_pct(r.reused_share)}  fresh {_pct(fresh)}"
        f"  stale {_pct(r.stale_share)} trend {trend}",
        f"  closes/s {by_reason}  (injected {r.injected:.1f}/s)",
    ]


def _active(s: Snapshot) -> str:
    return f"active {sum(s.active.values()):.0f} (stale {s.active.get('stale', 0.0):.0f})"


def _gauge_line(s: Snapshot, now: float) -> str:
    ratio = "n/a" if s.ratio is None else f"{s.ratio:g}"
    epoch = "none" if s.epoch <= 0 else f"{_age(now - s.epoch)} ago"
    return f"  close ratio {ratio}  epoch {epoch}  {_active(s)}"


def _target_lines(target: Target, now: float) -> list[str]:
    if target.error is not None or not target.history:
        return [f"{target.url}: {target.error or 'no scrape yet'}"]
    latest = target.history[-1]
    lines = [f"{','.join(latest.vips)}  {target.url}"]
    if target.measured:
        lines += _rate_lines(target.current(), direction(halves(target.history)))
    else:
        lines.append("  waiting for a second scrape")
    lines.append(_gauge_line(latest, now))
    return lines


def _total_lines(targets: Sequence[Target]) -> list[str]:
    measured = [t for t in targets if t.measured]
    lines = [f"total  {len(measured)} of {len(targets)} proxies measured"]
    if not measured:
        return lines
    current = sum((t.current() for t in measured), Rates())
    lines += _rate_lines(current, direction(sum_halves([halves(t.history) for t in measured])))
    active = sum(sum(t.history[-1].active.values()) for t in measured)
    stale = sum(t.history[-1].active.get("stale", 0.0) for t in measured)
    lines.append(f"  active {active:.0f} (stale {stale:.0f})")
    return lines


def vip_lines(targets: Sequence[Target], glyphs: tuple[str, str] = UNICODE_GLYPHS) -> list[str]:
    """Traffic share per VIP as text bars; nothing unless two or more VIPs are measured."""
    measured = [t for t in targets if t.measured]
    vips = list(dict.fromkeys(vip for t in measured for vip in t.history[-1].vips))
    if len(vips) < 2:
        return []
    by_vip = sum((t.current() for t in measured), Rates()).by_vip
    total = sum(by_vip.values())
    width = max(len(vip) for vip in vips)
    lines = ["traffic share by VIP"]
    for vip in vips:
        rate = by_vip.get(vip, 0.0)
        share = rate / total if total > 0 else 0.0
        lines.append(f"  {vip:<{width}} {bar(share, glyphs=glyphs)} {share:4.0%}  {rate:.1f} req/s")
    return lines


def render(
    targets: Sequence[Target],
    now: float,
    interval: float,
    glyphs: tuple[str, str] = UNICODE_GLYPHS,
) -> list[str]:
    """The whole view; `now` is the wall-clock time (the clock shown and the epoch's age)."""
    clock = time.strftime("%H:%M:%S", time.localtime(now))
    lines = [f"migproxy watch  {len(targets)} URL(s)  every {interval:g} s  {clock}", ""]
    for target in targets:
        lines += _target_lines(target, now)
    if len(targets) > 1:
        lines += ["", *_total_lines(targets)]
    bars = vip_lines(targets, glyphs)
    if bars:
        lines += ["", *bars]
    return lines


def frame(lines: Sequence[str], tty: bool) -> str:
    """One screen: redrawn in place on a terminal, appended (blank line after) otherwise."""
    text = "\n".join(lines) + "\n"
    return CLEAR + text if tty else text + "\n"


def metrics_url(url: str) -> str:
    """`url` with /metrics appended when its path is empty (http:// when it has no scheme)."""
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"{url}: not an http(s) URL")
    if parts.path in ("", "/"):
        parts = parts._replace(path="/metrics")
    return urlunsplit(parts)


# ---- the fetching loop -------------------------------------------------------------------


def _os_reason(err: OSError) -> str:
    if err.errno == errno.ECONNREFUSED:
        return "connection refused"
    return (err.strerror or str(err) or type(err).__name__).lower()


async def scrape(session: aiohttp.ClientSession, target: Target, timeout: float) -> None:
    """Scrape `target` once: append a snapshot, or set its error."""
    try:
        async with session.get(target.url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            if resp.status != 200:
                target.error = f"error (HTTP {resp.status})"
                return
            text = await resp.text()
        snapshot = parse(text, time.monotonic())
    except aiohttp.ClientConnectorError as err:
        target.error = f"unreachable ({_os_reason(err.os_error)})"
    except TimeoutError:
        target.error = f"unreachable (no answer within {timeout:g} s)"
    except aiohttp.ClientError as err:
        target.error = f"unreachable ({str(err) or type(err).__name__})"
    except ValueError as err:
        target.error = f"error (not a Prometheus exposition: {err})"
    else:
        if snapshot.vips:
            target.history.append(snapshot)
            target.error = None
        else:
            target.error = "error (no migproxy metrics)"


async def _scrape_all(
    session: aiohttp.ClientSession, targets: Sequence[Target], timeout: float
) -> None:
    await asyncio.gather(*(scrape(session, target, timeout) for target in targets))


def _glyphs(out: TextIO) -> tuple[str, str]:
    try:
        "".join(UNICODE_GLYPHS).encode(out.encoding or "ascii")
    except (LookupError, UnicodeEncodeError):
        return ASCII_GLYPHS
    return UNICODE_GLYPHS


def _show(out: TextIO, targets: Sequence[Target], interval: float, tty: bool) -> None:
    out.write(frame(render(targets, time.time(), interval, _glyphs(out)), tty))
    out.flush()


async def watch(urls: Sequence[str], interval: float, once: bool, out: TextIO) -> int:
    """Scrape and show until cancelled; with `once`, two scrapes and one plain snapshot.

    Returns the exit status: 1 when `once` and no URL answered its last scrape, else 0.
    """
    targets = [Target(url) for url in urls]
    timeout = min(max(interval, 1.0), MAX_TIMEOUT)
    async with aiohttp.ClientSession() as session:
        if once:
            await _scrape_all(session, targets, timeout)
            await asyncio.sleep(interval)
            await _scrape_all(session, targets, timeout)
            _show(out, targets, interval, tty=False)
            return 0 if any(t.error is None and t.history for t in targets) else 1
        tty = out.isatty()
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await _scrape_all(session, targets, timeout)
            _show(out, targets, interval, tty)
            await asyncio.sleep(max(0.0, started + interval - loop.time()))


def _interval(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: not a number") from None
    if not 0.1 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{value}: must be between 0.1 and 3600 seconds")
    return seconds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="migproxy watch",
        description="Live view of a VIP migration's convergence from proxies' admin /metrics.",
    )
    parser.add_argument(
        "urls",
        nargs="+",
        metavar="URL",
        type=metrics_url,
        help="admin metrics URL, e.g. http://127.0.0.1:9105/metrics (a base URL gets /metrics)",
    )
    parser.add_argument(
        "--interval", type=_interval, default=1.0, help="seconds between scrapes (default 1.0)"
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="scrape twice --interval apart, print one snapshot and exit (1: no URL answered)",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """`migproxy watch`; Ctrl-C ends it with status 0."""
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(watch(args.urls, args.interval, args.once, sys.stdout))
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # e.g. piped into head: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
