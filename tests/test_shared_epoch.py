# SharedEpoch: the epoch of a supervised proxy, the same in every worker through a file in the
# run directory. Two ProxyContexts stand for two workers; no sockets, no running loop.
from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from migproxy.config import Address, Config, ListenConfig, UpstreamConfig
from migproxy.config_values import Epoch
from migproxy.control import SharedEpoch
from migproxy.proxy import ProxyContext

CONFIG = Config(
    listen=ListenConfig(Address("127.0.0.1", 8080)),
    upstream=UpstreamConfig(Address("127.0.0.1", 8081)),
)
E1, E2 = 1_800_000_000.0, 1_800_000_100.0


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def worker(loop: asyncio.AbstractEventLoop, path: Path) -> tuple[ProxyContext, SharedEpoch]:
    ctx = ProxyContext(CONFIG, loop)
    shared = SharedEpoch(path, ctx)
    shared.attach()
    return ctx, shared


async def one_follow_round(shared: SharedEpoch) -> None:
    task = asyncio.create_task(shared.follow(interval=0))
    for _ in range(3):  # the sleep, the read, the take
        await asyncio.sleep(0)
    task.cancel()


def test_a_worker_started_again_takes_the_epoch_its_siblings_have(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    path = tmp_path / "epoch.json"
    first, _ = worker(loop, path)
    assert not path.exists()  # nothing was started: the config's epoch (none) stands
    first.set_epoch(E1, E2)  # POST /migration/epoch, or the watch of the name
    restarted, _ = worker(loop, path)
    assert (restarted.epoch, restarted.migration_state()["epoch_closes_from"]) == (E1, E2)


def test_an_epoch_started_in_one_worker_is_followed_by_the_other(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    path = tmp_path / "epoch.json"
    first, _ = worker(loop, path)
    second, second_shared = worker(loop, path)
    first.set_epoch(E1)
    loop.run_until_complete(one_follow_round(second_shared))
    assert second.epoch == E1
    first.set_epoch(None)  # as a reload that clears [migration] epoch does
    loop.run_until_complete(one_follow_round(second_shared))
    assert second.epoch is None


def test_a_reload_that_changes_the_configured_epoch_reaches_a_restarted_worker(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    path = tmp_path / "epoch.json"
    first, _ = worker(loop, path)
    first.set_epoch(E1)
    migration = dataclasses.replace(CONFIG.migration, epoch=Epoch(E2, "2027-01-15T08:01:40Z"))
    first.apply_config(dataclasses.replace(CONFIG, migration=migration))
    restarted, _ = worker(loop, path)
    assert restarted.epoch == E2


def test_the_epoch_in_force_is_not_started_again(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Each worker gets POST /migration/epoch from the supervisor, and may read the same epoch
    # from the file a sibling wrote first: one epoch, logged once.
    ctx, _ = worker(loop, tmp_path / "epoch.json")
    caplog.set_level("INFO", logger="migproxy")
    ctx.set_epoch(E1)
    ctx.set_epoch(E1)
    assert [r.getMessage() for r in caplog.records].count(
        "migration epoch 2027-01-15T08:00:00Z"
    ) == 1


def test_an_unreadable_file_is_logged_and_changes_nothing(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "epoch.json"
    path.write_text("{not json")
    ctx, _ = worker(loop, path)
    assert ctx.epoch is None
    assert "unreadable epoch file" in caplog.text
