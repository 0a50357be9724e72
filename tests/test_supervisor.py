# The supervisor's pure helpers, and the config its workers keep in force in the run directory
# (the processes themselves are tested end to end in tests/e2e/test_workers.py).
from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from migproxy.config import ConfigError
from migproxy.control import CONFIG_IN_FORCE, Reloader, config_in_force, keep_in_force
from migproxy.proxy import ProxyContext
from migproxy.supervisor import _json_or_text

BASE = '[listen]\naddress = "127.0.0.1:8080"\n[upstream]\naddress = "127.0.0.1:8081"\n'


@pytest.mark.parametrize(
    ("answer", "shown"),
    [
        pytest.param('{"reloaded": true}', {"reloaded": True}, id="json"),
        pytest.param(
            "500 Internal Server Error\n\nServer got itself in trouble\n",
            {"error": "500 Internal Server Error\n\nServer got itself in trouble"},
            id="aiohttp-500",
        ),
        pytest.param("", {"error": ""}, id="empty"),
    ],
)
def test_a_workers_answer_is_shown_whether_or_not_it_is_json(answer: str, shown: object) -> None:
    assert _json_or_text(answer) == shown


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_a_worker_started_again_takes_the_config_its_siblings_have(tmp_path: Path) -> None:
    path, run_dir = tmp_path / "migproxy.toml", tmp_path / "run"
    run_dir.mkdir()
    path.write_text(BASE + "[close]\nratio = 0.1\n")
    config, content = config_in_force(str(path), run_dir)  # the first start: the file's
    assert config.close.ratio == 0.1 and config.source == str(path)
    assert (run_dir / CONFIG_IN_FORCE).read_bytes() == content == path.read_bytes()
    # An edit the workers refused as a whole: a new listening address needs a restart.
    path.write_text(BASE.replace("8080", "9090") + "[close]\nratio = 0.9\n")
    config, _ = config_in_force(str(path), run_dir)
    assert (config.listen.address.port, config.close.ratio) == (8080, 0.1)


def test_every_config_a_worker_applies_is_kept_for_a_restart(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    path, run_dir = tmp_path / "migproxy.toml", tmp_path / "run"
    run_dir.mkdir()
    path.write_text(BASE + "[close]\nratio = 0.1\n")
    config, content = config_in_force(str(path), run_dir)
    ctx = ProxyContext(config, loop)
    reloader = Reloader(
        path, ctx, loaded=content, applied=functools.partial(keep_in_force, run_dir)
    )
    path.write_text(BASE + "[close]\nratio = 0.5\n")
    assert reloader.reload("test")[0]
    assert config_in_force(str(path), run_dir)[0].close.ratio == 0.5
    path.write_text(BASE + "[close]\nratio = 2\n")  # refused: kept is what is in force
    assert not reloader.reload("test")[0]
    assert config_in_force(str(path), run_dir)[0].close.ratio == 0.5


def test_a_first_start_without_a_readable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: -: cannot read file"):
        config_in_force(str(tmp_path / "missing.toml"), tmp_path)
