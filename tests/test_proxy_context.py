# ProxyContext on reloads: the ramp of close.ratio, the epoch, the budget's tokens. An event
# loop whose clock the test sets; no sockets.
from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Iterator
from typing import Any

import pytest

from migproxy.config import Address, CloseConfig, Config, ListenConfig, UpstreamConfig
from migproxy.proxy import ProxyContext


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ctx(clock: Clock) -> Iterator[ProxyContext]:
    loop = asyncio.new_event_loop()
    loop.time = clock  # type: ignore[method-assign]
    config = Config(
        listen=ListenConfig(Address("127.0.0.1", 8080)),
        upstream=UpstreamConfig(Address("127.0.0.1", 8081)),
        close=CloseConfig(ratio=0.0, ramp_seconds=10.0, max_closes_per_second=1.0),
    )
    yield ProxyContext(config, loop)
    loop.close()


def with_close(ctx: ProxyContext, **close: Any) -> Config:
    return dataclasses.replace(ctx.config, close=dataclasses.replace(ctx.config.close, **close))


def test_ratio_ramps_and_keeps_ramping_through_a_reload_of_other_keys(
    ctx: ProxyContext, clock: Clock
) -> None:
    ctx.apply_config(with_close(ctx, ratio=1.0))
    assert ctx.policy.ratio == 0.0
    clock.now += 5.0
    ctx.sweep()
    assert ctx.policy.ratio == pytest.approx(0.5)
    ctx.apply_config(with_close(ctx, linger=1.0))  # the ratio is not what changed
    assert ctx.policy.ratio == pytest.approx(0.5)
    clock.now += 5.0
    ctx.sweep()
    assert ctx.policy.ratio == 1.0


def test_a_new_ratio_mid_ramp_ramps_from_where_it_was(ctx: ProxyContext, clock: Clock) -> None:
    ctx.apply_config(with_close(ctx, ratio=1.0))
    clock.now += 5.0
    ctx.sweep()
    ctx.apply_config(with_close(ctx, ratio=0.0))
    assert ctx.policy.ratio == pytest.approx(0.5)
    clock.now += 5.0
    ctx.sweep()
    assert ctx.policy.ratio == pytest.approx(0.25)


def test_reload_keeps_the_budget_unless_it_changes(ctx: ProxyContext) -> None:
    gate = ctx.gate
    ctx.apply_config(with_close(ctx, linger=1.0))
    assert ctx.gate is gate
    ctx.apply_config(with_close(ctx, max_closes_per_second=5.0))
    assert ctx.gate is not gate


def test_epoch_starts_with_its_closes_held_until_closes_from(
    ctx: ProxyContext, clock: Clock
) -> None:
    wall = clock.now + ctx.wall_offset
    ctx.set_epoch(wall, closes_from=wall + 30.0)
    assert ctx.epoch == wall and ctx.policy.epoch is None  # stale at once, closed later
    clock.now += 31.0
    ctx.sweep()
    assert ctx.policy.epoch == pytest.approx(ctx.epoch_at)
    ctx.set_epoch(None)
    assert ctx.policy.epoch is None and ctx.epoch_at == float("-inf")


def test_a_reloaded_seed_restarts_the_draws(ctx: ProxyContext) -> None:
    expected = random.Random(42)
    ctx.apply_config(with_close(ctx, seed=42))
    assert ctx.rng.random() == expected.random()
    ctx.apply_config(with_close(ctx, seed=42, ratio=0.5))  # same seed: the draws go on
    assert ctx.rng.random() == expected.random()


def test_a_reload_that_shortens_a_timeout_shortens_the_sweep(ctx: ProxyContext) -> None:
    assert ctx.sweep_every == 0.5  # a quarter of the shortest default: the 2 s linger
    limits = dataclasses.replace(ctx.config.limits, head_timeout=0.4)
    ctx.apply_config(dataclasses.replace(ctx.config, limits=limits))
    assert ctx.sweep_every == pytest.approx(0.1)  # so a 0.4 s deadline is not met at 1 s
    ctx.apply_config(with_close(ctx, idle_timeout=0.2))
    assert ctx.sweep_every == pytest.approx(0.05)


def test_linger_max_unset_is_30_s_or_linger_if_that_is_longer(ctx: ProxyContext) -> None:
    assert ctx.linger_max == 30.0
    ctx.apply_config(with_close(ctx, linger=45.0))  # valid before linger_max existed
    assert ctx.linger_max == 45.0
    ctx.apply_config(with_close(ctx, linger=2.0, linger_max=5.0))
    assert ctx.linger_max == 5.0
