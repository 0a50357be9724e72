# EpochWatcher against a real name server: migproxy.dnsserver on 127.0.0.1 answers the watched
# name like a GSLB (one address per query, drawn by weight), and the watcher samples it every
# 0.2 s, 50 queries a sample, for a ProxyContext on the test's loop (no proxy sockets).
#
# Every wait is bounded ("until X, at most N s"); none asserts how fast something happened.
# The draws use seeded random sources: reproducible shares.
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from migproxy.config import Address, Config, ListenConfig, MigrationConfig, UpstreamConfig
from migproxy.dnsserver import DnsServer, Mode
from migproxy.metrics import build_metrics
from migproxy.migration import EpochWatcher
from migproxy.proxy import ProxyContext
from migproxy.stats import DnsSample
from tests.upstream.test_resolver import name_server, run, until

NAME = "svc.gslb.test"
THIS_VIP = "10.0.0.1"
OTHER_VIP = "10.0.0.2"
SHARE_CHANGE = 0.2


def config(server: DnsServer, watch_name: str = NAME, **migration: Any) -> Config:
    """A config watching `watch_name` on `server`; `migration` overrides [migration] keys."""
    watch = MigrationConfig(
        watch_name=watch_name,
        vip_addresses=(THIS_VIP,),
        nameservers=(Address("127.0.0.1", server.port),),
        sample_interval=0.2,
        samples=50,
        share_change=SHARE_CHANGE,
    )
    return Config(
        listen=ListenConfig(Address("127.0.0.1", 8080)),
        upstream=UpstreamConfig(Address("127.0.0.1", 8081)),
        migration=dataclasses.replace(watch, **migration),
    )


def weigh(server: DnsServer, this: float, other: float, ttl: int = 30, seed: int = 1) -> None:
    weights = {THIS_VIP: this, OTHER_VIP: other}
    server.set_weighted(NAME, weights, ttl=ttl, rng=random.Random(seed))


@contextlib.asynccontextmanager
async def watching(ctx: ProxyContext) -> AsyncIterator[EpochWatcher]:
    watcher = EpochWatcher(ctx)
    watcher.start()
    try:
        yield watcher
    finally:
        await watcher.stop()


def samples(ctx: ProxyContext, result: DnsSample) -> int:
    """Samples counted since the last flush (only a context with metrics flushes)."""
    return ctx.stats.dns_samples.get(result, 0)


async def more_samples(ctx: ProxyContext, result: DnsSample, count: int, seconds: float) -> None:
    """Wait until `count` more samples of `result` are counted, at most `seconds`."""
    target = samples(ctx, result) + count
    await until(lambda: samples(ctx, result) >= target, seconds)


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "migproxy"]


def test_a_moved_share_starts_one_epoch(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="migproxy")
    registry = CollectorRegistry()

    async def scenario() -> None:
        async with name_server() as server:
            weigh(server, 100, 0)
            metrics = build_metrics(registry, "old")
            ctx = ProxyContext(config(server), asyncio.get_running_loop(), metrics=metrics)
            async with watching(ctx):
                await until(lambda: ctx.stats.dns_share == 1.0, seconds=5.0)  # the baseline
                assert ctx.epoch is None and ctx.policy.epoch is None
                weigh(server, 0, 100)
                await until(lambda: ctx.epoch is not None, seconds=5.0)
                epoch = ctx.epoch
                # no start_after_ttl: the epoch policy closes stale connections at once
                assert ctx.policy.epoch == ctx.epoch_at
                assert ctx.migration_state()["epoch_closes_from"] is None
                ctx.sweep()  # flushes the metrics
                await more_samples(ctx, DnsSample.OK, 3, seconds=5.0)
                assert ctx.epoch == epoch  # the new share is the baseline: no other epoch
                ctx.sweep()

            def value(name: str, **labels: str) -> float | None:
                return registry.get_sample_value(name, {"vip": "old", **labels})

            assert value("migproxy_migration_dns_share") == 0.0
            assert value("migproxy_migration_epoch_timestamp_seconds") == epoch
            assert (value("migproxy_migration_dns_samples_total", result="ok") or 0) >= 5
            assert value("migproxy_migration_dns_samples_total", result="error") == 0
            assert server.queries % 50 == 0  # whole samples, every query reached the server

    run(scenario())
    logged = messages(caplog)
    assert sum("100.0% of 50 answers point at this VIP (the baseline)" in m for m in logged) == 1
    moved = [m for m in logged if "a new epoch" in m]
    assert moved == [
        f"migration watch {NAME}: the share of answers pointing at this VIP moved from "
        "100.0% to 0.0%: a new epoch"
    ]
    assert sum(m.startswith("migration epoch ") for m in logged) == 1  # ProxyContext's


def test_start_after_ttl_holds_the_closes_until_the_ttl_passed() -> None:
    async def scenario() -> None:
        async with name_server() as server:
            weigh(server, 100, 0, ttl=1)
            ctx = ProxyContext(config(server, start_after_ttl=True), asyncio.get_running_loop())
            async with watching(ctx):
                await until(lambda: ctx.stats.dns_share == 1.0, seconds=5.0)
                weigh(server, 0, 100, ttl=1)
                await until(lambda: ctx.epoch is not None, seconds=5.0)
            epoch = ctx.epoch
            assert epoch is not None
            closes_from = ctx.migration_state()["epoch_closes_from"]
            assert isinstance(closes_from, float)
            assert closes_from == pytest.approx(epoch + 1.0)  # the answers' TTL
            # stale at once (the cohort), closed only from epoch + TTL
            assert ctx.epoch_at == pytest.approx(epoch - ctx.wall_offset)
            ctx.sweep()
            if ctx.now + ctx.wall_offset < closes_from:  # (as good as always: 1 s)
                assert ctx.policy.epoch is None

            def applied() -> bool:
                ctx.sweep()
                return ctx.policy.epoch is not None

            await until(applied, seconds=5.0)
            assert ctx.policy.epoch == ctx.epoch_at
            assert ctx.now + ctx.wall_offset >= closes_from

    run(scenario())


def test_noise_below_share_change_starts_nothing() -> None:
    async def scenario() -> None:
        async with name_server() as server:
            weigh(server, 100, 0)
            ctx = ProxyContext(config(server), asyncio.get_running_loop())
            async with watching(ctx):
                await until(lambda: ctx.stats.dns_share == 1.0, seconds=5.0)
                weigh(server, 95, 5, seed=2)  # moves the share by 0.05, share_change is 0.2
                await more_samples(ctx, DnsSample.OK, 8, seconds=10.0)
                assert 0.8 < ctx.stats.dns_share < 1.0
            assert ctx.epoch is None

    run(scenario())


@pytest.mark.parametrize("mode", ["drop", "servfail"])
def test_outage_starts_nothing_and_is_counted(mode: Mode, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="migproxy")

    async def scenario() -> None:
        async with name_server() as server:
            weigh(server, 100, 0)
            # 20 queries a sample: a dropped one takes its whole timeout (0.2 s)
            ctx = ProxyContext(config(server, samples=20), asyncio.get_running_loop())
            async with watching(ctx):
                await until(lambda: ctx.stats.dns_share == 1.0, seconds=5.0)
                server.set_mode(mode)
                await more_samples(ctx, DnsSample.ERROR, 3, seconds=10.0)
                assert ctx.epoch is None
                assert ctx.stats.dns_share == 1.0  # the last sample that answered
                server.set_mode("answer")
                await more_samples(ctx, DnsSample.OK, 2, seconds=5.0)
            assert ctx.epoch is None

    run(scenario())
    logged = messages(caplog)
    reason = "timed out" if mode == "drop" else "no name server answered (SERVFAIL)"
    failed = [m for m in logged if "DNS sample failed" in m]
    assert failed == [
        f"migration watch {NAME}: DNS sample failed: {reason} (20 of 20 queries failed); "
        "no epoch starts until it answers"
    ]
    assert sum("DNS answers again after" in m for m in logged) == 1


def test_dual_stack_vip_asks_both_families() -> None:
    async def scenario() -> None:
        async with name_server() as server:
            # this VIP is only in the AAAA answers, the other only in the A answers
            server.set_weighted(NAME, {OTHER_VIP: 1.0, "fd00::1": 1.0}, ttl=30)
            dual = config(server, vip_addresses=(THIS_VIP, "fd00::1"))
            ctx = ProxyContext(dual, asyncio.get_running_loop())
            async with watching(ctx):
                await until(lambda: samples(ctx, DnsSample.OK) >= 1, seconds=5.0)
            assert ctx.stats.dns_share == 0.5  # 25 A answers, 25 AAAA answers

    run(scenario())


def test_reload_starts_and_stops_the_watch() -> None:
    async def scenario() -> None:
        async with name_server() as server:
            weigh(server, 100, 0)
            unwatched = config(server, watch_name="")
            ctx = ProxyContext(unwatched, asyncio.get_running_loop())
            async with watching(ctx):
                await asyncio.sleep(0.5)  # a few looks at the config: nothing to watch
                assert server.queries == 0 and math.isnan(ctx.stats.dns_share)
                ctx.apply_config(config(server))
                await until(lambda: ctx.stats.dns_share == 1.0, seconds=5.0)
                ctx.apply_config(unwatched)
                await until(lambda: math.isnan(ctx.stats.dns_share), seconds=5.0)
                asked = server.queries
                await asyncio.sleep(0.5)
                assert server.queries == asked
                # watched again: a fresh baseline, so the share found meanwhile is no move
                weigh(server, 0, 100)
                ctx.apply_config(config(server))
                await more_samples(ctx, DnsSample.OK, 3, seconds=5.0)
                assert ctx.stats.dns_share == 0.0
            assert ctx.epoch is None
            assert samples(ctx, DnsSample.ERROR) == 0

    run(scenario())


def test_watcher_starts_once_and_stops_idempotently() -> None:
    async def scenario() -> None:
        async with name_server() as server:
            ctx = ProxyContext(config(server, watch_name=""), asyncio.get_running_loop())
            watcher = EpochWatcher(ctx)
            watcher.start()
            with pytest.raises(RuntimeError, match="already started"):
                watcher.start()
            await watcher.stop()
            await watcher.stop()

    run(scenario())
