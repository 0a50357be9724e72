# SharedEpoch: the epoch of a supervised proxy, the same in every worker through a file in the
# run directory. Two ProxyContexts stand for two workers; no sockets, no running loop.
from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import pytest

from migproxy.config import Address, Config, ListenConfig, UpstreamConfig
from migproxy.config_values import Epoch
from migproxy.control import SharedEpoch, write_atomically
from migproxy.proxy import ProxyContext

CONFIG = Config(
    listen=ListenConfig(Address("127.0.0.1", 8080)),
    upstream=UpstreamConfig(Address("127.0.0.1", 8081)),
)
E1, E2 = 1_800_000_000.0, 1_800_000_100.0


def configured(epoch: Epoch) -> Config:
    return dataclasses.replace(CONFIG, migration=dataclasses.replace(CONFIG.migration, epoch=epoch))


def worker(
    loop: asyncio.AbstractEventLoop, path: Path, config: Config = CONFIG
) -> tuple[ProxyContext, SharedEpoch]:
    ctx = ProxyContext(config, loop)
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
    first.apply_config(configured(Epoch(E2, "2027-01-15T08:01:40Z")))
    restarted, _ = worker(loop, path)
    assert restarted.epoch == E2


def test_a_worker_that_reloads_late_does_not_undo_a_newer_epoch(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    # The file's [migration] epoch changes to "now"; worker A reloads it at once, then an
    # epoch is started by API (every worker gets it), then worker B notices the file.
    path = tmp_path / "epoch.json"
    a, _ = worker(loop, path)
    b, _ = worker(loop, path)
    now = configured(Epoch(E1, "now"))
    a.apply_config(now)
    for ctx in (a, b):
        ctx.set_epoch(E2)
    b.apply_config(
        dataclasses.replace(
            now, migration=dataclasses.replace(now.migration, epoch=Epoch(E1 + 5, "now"))
        )
    )
    assert b.epoch == E2  # not its own "now", which is older than the API's epoch
    restarted, _ = worker(loop, path, now)
    assert restarted.epoch == E2


def test_workers_starting_together_agree_on_a_configured_now(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    path = tmp_path / "epoch.json"
    first, _ = worker(loop, path, configured(Epoch(E1, "now")))
    second, _ = worker(loop, path, configured(Epoch(E1 + 0.2, "now")))  # read a moment later
    assert first.epoch == second.epoch == E1
    restarted, _ = worker(loop, path, configured(Epoch(E2, "now")))  # an hour on
    assert restarted.epoch == E1


def test_processes_writing_one_file_at_once_never_fail_or_leave_it_partial(
    tmp_path: Path,
) -> None:
    path = tmp_path / "epoch.json"
    script = (
        "import sys; from pathlib import Path; from migproxy.control import write_atomically\n"
        "for i in range(300): write_atomically(Path(sys.argv[1]), sys.argv[2].encode() * 500)\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", script, str(path), tag]) for tag in "ab"]
    contents = set()
    deadline = time.monotonic() + 30
    while any(w.poll() is None for w in writers) and time.monotonic() < deadline:
        if path.exists():
            contents.add(path.read_bytes())
    assert [w.wait(30) for w in writers] == [0, 0]
    assert contents <= {b"a" * 500, b"b" * 500}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch.json"]  # no staging left
    assert not write_atomically(path, b"c", replace=False) and path.read_bytes() != b"c"


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
