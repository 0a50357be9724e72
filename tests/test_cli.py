# The command line as an operator uses it: `python -m migproxy check|run --config FILE` and
# `--version`, run as real subprocesses. A bad configuration exits 1 with exactly one line,
# "FILE: key: reason", on stderr (DESIGN.md §4).
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from migproxy import __version__
from tests.e2e.servers import ScriptedUpstream, run_proxy

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "migproxy.example.toml"
TIMEOUT = 60.0

VALID = '[listen]\naddress = "127.0.0.1:18080"\n[upstream]\naddress = "127.0.0.1:18081"\n'


def migproxy(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migproxy", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=TIMEOUT,
        check=False,
    )


def test_check_example_config_is_valid() -> None:
    result = migproxy("check", "--config", str(EXAMPLE))
    assert result.returncode == 0, result
    assert result.stderr == ""
    assert result.stdout.strip() == f"{EXAMPLE}: ok"


def test_check_reads_a_config_from_a_pipe() -> None:
    result = migproxy("check", "--config", "/dev/stdin", stdin=VALID)
    assert (result.returncode, result.stdout.strip()) == (0, "/dev/stdin: ok"), result


def test_check_relative_path_is_reported_as_given() -> None:
    result = migproxy("check", "--config", "config/migproxy.example.toml")
    assert result.returncode == 0, result


# (file contents, expected "key: reason" after "FILE: ").
BAD_CONFIGS = [
    pytest.param(VALID + "bogus = 1\n", "upstream.bogus: unknown key", id="unknown-key"),
    pytest.param(
        VALID + "[close]\nratio = 1.5\n",
        "close.ratio: must be a number between 0.0 and 1.0, got 1.5",
        id="ratio-1.5",
    ),
    pytest.param(
        '[listen]\nbacklog = 10\n[upstream]\naddress = "127.0.0.1:1"\n',
        "listen.address: required",
        id="missing-listen-address",
    ),
    pytest.param(
        '[upstream]\naddress = "127.0.0.1:1"\n',
        "listen.address: required",
        id="missing-listen-section",
    ),
]

# Bad files whose reason wording is not pinned here: only "FILE: key: " is.
BAD_KEYS = [
    pytest.param(VALID + "[close]\nratio = -0.1\n", "close.ratio", id="ratio-negative"),
    pytest.param(VALID + '[close]\nratio = "high"\n', "close.ratio", id="ratio-string"),
    pytest.param(VALID + "[close]\nratio = nan\n", "close.ratio", id="ratio-nan"),
    pytest.param(VALID + "[limits]\nmax_headers = 0\n", "limits.max_headers", id="max-headers-0"),
    pytest.param(
        VALID + "[limits]\nhead_timeout = 0\n", "limits.head_timeout", id="head-timeout-0"
    ),
    pytest.param(VALID + '[log]\nlevel = "loud"\n', "log.level", id="log-level"),
    pytest.param(VALID + "[nonsense]\nx = 1\n", "nonsense", id="unknown-section"),
    pytest.param(
        '[listen]\naddress = "127.0.0.1"\n[upstream]\naddress = "127.0.0.1:1"\n',
        "listen.address",
        id="address-without-port",
    ),
    pytest.param(
        '[listen]\naddress = "127.0.0.1:99999"\n[upstream]\naddress = "127.0.0.1:1"\n',
        "listen.address",
        id="port-out-of-range",
    ),
    pytest.param("[listen\n", "-", id="invalid-toml"),
]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_bad_config_exits_1_with_file_key_reason(
    tmp_path: Path, command: str, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    result = migproxy(command, "--config", str(path))
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert result.stderr == f"{path}: {message}\n"


@pytest.mark.parametrize(("text", "key"), BAD_KEYS)
def test_bad_value_names_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    result = migproxy("check", "--config", str(path))
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{path}: {key}: "), lines[0]
    assert len(lines[0]) > len(f"{path}: {key}: "), "the reason is empty"


def test_missing_file_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    result = migproxy("check", "--config", str(path))
    assert result.returncode == 1, result
    assert result.stderr.startswith(f"{path}: "), result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_run_on_bad_config_does_not_start(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "[close]\nratio = 1.5\n")
    result = migproxy("run", "--config", str(path), "--no-uvloop")
    assert result.returncode == 1, result
    assert result.stderr == f"{path}: close.ratio: must be a number between 0.0 and 1.0, got 1.5\n"


def test_run_on_busy_port_exits_1(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        path = tmp_path / "busy.toml"
        path.write_text(
            f'[listen]\naddress = "127.0.0.1:{port}"\n[upstream]\naddress = "127.0.0.1:1"\n'
        )
        result = migproxy("run", "--config", str(path))
    assert result.returncode == 1, result
    assert "cannot start" in result.stderr, result.stderr


def test_second_instance_on_the_same_address_exits_1(tmp_path: Path) -> None:
    # The listening sockets use SO_REUSEPORT (listen.accept_queues); a second proxy must still
    # be refused the address instead of silently sharing it.
    with ScriptedUpstream(lambda sock, head: None) as upstream, run_proxy(upstream.port) as first:
        path = tmp_path / "second.toml"
        path.write_text(
            f'[listen]\naddress = "127.0.0.1:{first.port}"\n'
            f'[upstream]\naddress = "127.0.0.1:{upstream.port}"\n'
        )
        result = migproxy("run", "--config", str(path))
        assert first.proc.poll() is None
    assert result.returncode == 1, result
    assert "cannot start" in result.stderr, result.stderr


def test_version() -> None:
    result = migproxy("--version")
    assert result.returncode == 0, result
    assert result.stdout.strip() == f"migproxy {__version__}"


def test_console_script_version() -> None:
    script = Path(sys.executable).parent / "migproxy"
    assert script.exists(), "scripts/setup installs the console script into the venv"
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode == 0, result
    assert result.stdout.strip() == f"migproxy {__version__}"


@pytest.mark.parametrize(
    "args", [[], ["check"], ["frobnicate", "--config", "x.toml"]], ids=["none", "no-config", "bad"]
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = migproxy(*args)
    assert result.returncode == 2, result
    assert "usage: migproxy" in result.stderr
