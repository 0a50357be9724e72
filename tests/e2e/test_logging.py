# The optional access log and the one-line problem log, read from the proxy's real output.
from __future__ import annotations

from migproxy.http1 import parse
from tests.conftest import unavailable
from tests.e2e.rawclient import RawClient
from tests.e2e.servers import ScriptedUpstream, answer_ok, run_proxy


def test_access_log_has_one_line_per_request_with_its_close_reason() -> None:
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(upstream.port, close={"ratio": 1.0}, log={"access_log": True}) as proxy,
    ):
        client = RawClient(proxy.port)
        try:
            assert client.request(b"GET /logged?x=1 HTTP/1.1\r\nHost: t\r\n\r\n").status == 200
        finally:
            client.close()
        client = RawClient(proxy.port)
        try:
            client.send(b"GET / HTTP/1.1\r\nHost: t\r\nBad Name: x\r\n\r\n")
            assert client.read_response().status == 400
        finally:
            client.close()
        proxy.stop()
        log = proxy.log()
    assert '127.0.0.1 "GET /logged?x=1 HTTP/1.1" 200 close=ratio' in log
    problems = [line for line in log.splitlines() if "400" in line and "invalid" in line]
    assert len(problems) == 1, log


def test_no_access_log_by_default() -> None:
    with ScriptedUpstream(answer_ok) as upstream, run_proxy(upstream.port) as proxy:
        client = RawClient(proxy.port)
        try:
            assert client.request(b"GET /quiet HTTP/1.1\r\nHost: t\r\n\r\n").status == 200
        finally:
            client.close()
        proxy.stop()
        assert "/quiet" not in proxy.log()


PURE_PYTHON_WARNING = "running the pure-Python head parser"


def test_the_pure_python_parser_is_announced_and_serves() -> None:
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(upstream.port, env={"MIGPROXY_PURE_PYTHON": "1"}) as proxy,
    ):
        client = RawClient(proxy.port)
        try:
            for _ in range(3):
                assert client.request(b"GET /pure HTTP/1.1\r\nHost: t\r\n\r\n").status == 200
        finally:
            client.close()
        proxy.stop()
        log = proxy.log()
    assert f"{PURE_PYTHON_WARNING} (MIGPROXY_PURE_PYTHON is set)" in log, log


def test_the_c_parser_runs_by_default() -> None:
    if not parse.ACCELERATED:
        unavailable("the C head parser was not built (scripts/setup needs gcc and Python.h)")
    with ScriptedUpstream(answer_ok) as upstream, run_proxy(upstream.port) as proxy:
        proxy.stop()
        assert PURE_PYTHON_WARNING not in proxy.log()
