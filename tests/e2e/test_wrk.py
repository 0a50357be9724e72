# Load through the proxy with wrk while it announces Connection: close on 10% of responses:
# wrk reconnects after every announced close, so any close that is not announced, or any
# reset that destroys a response, shows up as a socket error; any proxy error as a non-2xx.
from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.e2e.servers import Proxy, run_nginx, run_proxy

DURATION_S = 3
CONNECTIONS = 50
SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
REQUESTS = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
CLOSES = re.compile(r"^migproxy-closes (\d+) of (\d+)$", re.MULTILINE)
# Counts the responses that announce a close, to show the injection was live under load.
COUNT_CLOSES_LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) closes = 0; responses = 0 end
function response(status, headers, body)
  responses = responses + 1
  local value = headers["Connection"] or headers["connection"]
  if value and string.lower(value) == "close" then closes = closes + 1 end
end
function done(summary, latency, requests)
  local c, r = 0, 0
  for _, t in ipairs(threads) do c = c + t:get("closes"); r = r + t:get("responses") end
  io.write(string.format("migproxy-closes %d of %d\\n", c, r))
end
"""


@dataclass
class WrkResult:
    output: str
    requests: int
    socket_errors: dict[str, int]
    non_2xx: bool
    closes: int
    responses: int


def parse_wrk(output: str) -> WrkResult:
    m = REQUESTS.search(output)
    assert m is not None, f"no request count in wrk's output:\n{output}"
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    e = SOCKET_ERRORS.search(output)
    if e is not None:
        errors = dict(zip(errors, (int(g) for g in e.groups()), strict=True))
    c = CLOSES.search(output)
    closes, responses = (int(c.group(1)), int(c.group(2))) if c is not None else (0, 0)
    return WrkResult(output, int(m.group(1)), errors, "Non-2xx" in output, closes, responses)


def run_wrk(url: str) -> WrkResult:
    wrk = require_tool("wrk")
    with tempfile.TemporaryDirectory(prefix="migproxy-wrk-") as tmp:
        script = Path(tmp) / "count_closes.lua"
        script.write_text(COUNT_CLOSES_LUA)
        result = subprocess.run(
            [
                wrk,
                "-t1",
                f"-c{CONNECTIONS}",
                f"-d{DURATION_S}s",
                "--timeout",
                "5s",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            timeout=DURATION_S + 60,
            check=False,
        )
    assert result.returncode == 0, result
    return parse_wrk(result.stdout)


def assert_clean_run(result: WrkResult, proxy: Proxy) -> None:
    assert result.requests > 0, result.output
    assert all(n == 0 for n in result.socket_errors.values()), result.output
    assert not result.non_2xx, result.output
    # close.ratio = 0.1: about one response in ten announced a close, and wrk got through.
    assert result.responses > 0, result.output
    assert 0.05 <= result.closes / result.responses <= 0.15, result.output
    assert proxy.proc.poll() is None
    assert "Traceback" not in proxy.log(), proxy.log()


def test_parse_wrk_output() -> None:
    sample = (
        "Running 3s test @ http://127.0.0.1:1/\n"
        "  1 threads and 50 connections\n"
        "  1234 requests in 3.00s, 1.00MB read\n"
        "  Socket errors: connect 0, read 7, write 0, timeout 1\n"
        "  Non-2xx or 3xx responses: 3\n"
        "Requests/sec:    411.33\n"
        "migproxy-closes 120 of 1234\n"
    )
    parsed = parse_wrk(sample)
    assert parsed.requests == 1234
    assert parsed.socket_errors == {"connect": 0, "read": 7, "write": 0, "timeout": 1}
    assert parsed.non_2xx
    assert (parsed.closes, parsed.responses) == (120, 1234)
    clean = parse_wrk("  99 requests in 3.00s, 1.00KB read\nRequests/sec: 33.0\n")
    assert clean.requests == 99 and not clean.non_2xx
    assert set(clean.socket_errors.values()) == {0}


@pytest.mark.parametrize("uvloop", [True, False], ids=["uvloop", "asyncio"])
def test_wrk_through_proxy_in_front_of_nginx(uvloop: bool) -> None:
    nginx = require_tool("nginx")
    require_tool("wrk")
    with (
        run_nginx(nginx) as nginx_port,
        run_proxy(nginx_port, uvloop=uvloop, close={"ratio": 0.1, "seed": 1}) as proxy,
    ):
        result = run_wrk(proxy.url + "/")
        assert_clean_run(result, proxy)


def test_wrk_through_proxy_in_front_of_demo_backend(backend_port: int) -> None:
    require_tool("wrk")
    with run_proxy(backend_port, close={"ratio": 0.1, "seed": 1}) as proxy:
        result = run_wrk(proxy.url + "/")
        assert_clean_run(result, proxy)
