# The supervisor's pure helpers, and the config its workers keep in force in the run directory
# (the processes themselves are tested end to end in tests/e2e/test_workers.py).
from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import pytest

from migproxy.config import ConfigError, load_config
from migproxy.control import CONFIG_IN_FORCE, Reloader, config_in_force, keep_in_force
from migproxy.lifecycle import as_worker
from migproxy.proxy import ProxyContext
from migproxy.supervisor import _json_or_text, _with_fixed_now

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


def test_a_worker_started_again_takes_the_config_its_siblings_have(tmp_path: Path) -> None:
    path, run_dir = tmp_path / "migproxy.toml", tmp_path / "run"
    run_dir.mkdir()
    path.write_text(BASE + "[close]\nratio = 0.1\n")
    (run_dir / CONFIG_IN_FORCE).write_bytes(path.read_bytes())  # the supervisor, at start
    # An edit the workers refused as a whole: a new listening address needs a restart.
    path.write_text(BASE.replace("8080", "9090") + "[close]\nratio = 0.9\n")
    config, content = config_in_force(str(path), run_dir)
    assert (config.listen.address.port, config.close.ratio) == (8080, 0.1)
    assert config.source == str(path) and content == (run_dir / CONFIG_IN_FORCE).read_bytes()


def test_kept_content_that_does_not_load_is_logged_and_the_file_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, run_dir = tmp_path / "migproxy.toml", tmp_path / "run"
    run_dir.mkdir()
    path.write_text(BASE + "[close]\nratio = 0.3\n")
    kept = run_dir / CONFIG_IN_FORCE
    kept.write_text(BASE + "[close]\nfuture_key = 1\n")  # from another migproxy version, say
    config, content = config_in_force(str(path), run_dir)
    assert config.close.ratio == 0.3 and content == path.read_bytes()
    assert f"{kept}: close.future_key: unknown key; reading {path} instead" in caplog.text


def test_a_worker_reload_refuses_a_new_admin_address_as_the_supervisor_does(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    # A worker's admin address is its own (as_worker): comparing adjusted configs hid the
    # change, and workers applied the rest of an edit that POST /reload refused.
    path = tmp_path / "migproxy.toml"
    admin = '[admin]\naddress = "127.0.0.1:9901"\n'
    path.write_text(BASE + admin)
    loaded = load_config(path)
    ctx = ProxyContext(as_worker(loaded), loop)
    reloader = Reloader(path, ctx, in_force=loaded, adjust=as_worker)
    path.write_text(BASE + admin.replace("9901", "9902") + "[close]\nratio = 1\n")
    applied, message = reloader.reload("test")
    assert not applied and "admin.address: changed; a restart is needed" in message
    assert ctx.config.close.ratio == 0.0
    path.write_text(BASE + admin + "[close]\nratio = 1\n")
    assert reloader.reload("test")[0] and ctx.config.close.ratio == 1.0


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


def test_without_kept_content_a_worker_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "migproxy.toml"
    path.write_text(BASE + "[close]\nratio = 0.2\n")
    assert config_in_force(str(path), tmp_path)[0].close.ratio == 0.2


def test_a_start_without_a_readable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: -: cannot read file"):
        config_in_force(str(tmp_path / "missing.toml"), tmp_path)


NOW = 1_800_000_000.25
FIXED = b'{"epoch": "2027-01-15T08:00:00.250000Z"}'


@pytest.mark.parametrize(
    ("body", "sent"),
    [
        pytest.param(b"", FIXED, id="empty"),
        pytest.param(b" \n", FIXED, id="blank"),
        pytest.param(b'{"epoch": "now"}', FIXED, id="now"),
        pytest.param(b"{}", FIXED, id="no-epoch"),
        pytest.param(b'{"epoch": "2026-01-01T00:00:00Z"}', None, id="a-time"),
        pytest.param(b"not json", None, id="not-json"),
        pytest.param(b"[1]", None, id="not-an-object"),
    ],
)
def test_now_is_fixed_once_for_every_worker(body: bytes, sent: bytes | None) -> None:
    # Each worker reading "now" itself would start a slightly different epoch.
    assert _with_fixed_now(body, NOW) == (body if sent is None else sent)
