# The open-files limit, end to end: the proxy raises its soft limit to the hard one at start and
# says so; a low limit is warned about; running out of descriptors gets clients a clear 502,
# and the proxy serves again once descriptors are free.
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import pytest

from tests.e2e.rawclient import RawClient
from tests.e2e.servers import Proxy, ScriptedUpstream, answer_ok, run_proxy, wait_until


def open_files_limits(proxy: Proxy) -> tuple[int, int]:
    """The proxy process's (soft, hard) open-files limits, from /proc/PID/limits."""
    for line in Path(f"/proc/{proxy.proc.pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no 'Max open files' line")


@pytest.mark.parametrize(
    ("nofile", "limits", "said", "not_said"),
    [
        pytest.param(
            (256, 4096),
            (4096, 4096),
            "open files limit raised from 256 to 4096",
            "room for about",
            id="raised-to-the-hard-limit",
        ),
        pytest.param(
            (512, 512),
            (512, 512),
            "open files limit is 512: room for about 256 clients at once per process",
            None,
            id="low-limit-warned",
        ),
    ],
)
def test_the_open_files_limit_at_start(
    nofile: tuple[int, int], limits: tuple[int, int], said: str, not_said: str | None
) -> None:
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(upstream.port, nofile=nofile) as proxy,
    ):
        assert open_files_limits(proxy) == limits
        proxy.stop()
        log = proxy.log()
    assert said in log, log
    if not_said is not None:
        assert not_said not in log, log


def open_files(proxy: Proxy) -> int:
    return len(os.listdir(f"/proc/{proxy.proc.pid}/fd"))


def test_running_out_of_descriptors_gets_502_and_the_proxy_recovers() -> None:
    # 64 descriptors: the proxy's own (listeners, admin, event loop) leave room for a few dozen
    # clients. Five clients connect, then idle ones take every descriptor left (uvloop accepts
    # and closes those it cannot hold). Requests sent at once on the five find no descriptor
    # for an upstream connection: 502, each with its reason.
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(upstream.port, nofile=(64, 64)) as proxy,
        contextlib.ExitStack() as stack,
    ):
        clients = [RawClient(proxy.port) for _ in range(5)]
        for client in clients:
            stack.callback(client.close)
        for _ in range(80):
            stack.callback(socket.create_connection(("127.0.0.1", proxy.port), timeout=5).close)
        wait_until(lambda: open_files(proxy) >= 62, "the proxy to run out of descriptors")
        for client in clients:
            client.send(b"GET /busy HTTP/1.1\r\nHost: t\r\n\r\n")
        statuses = []
        for client in clients:
            resp = client.read_response()
            statuses.append(resp.status)
            if resp.status == 502:
                assert b"Too many open files" in resp.body, resp.body
        assert 502 in statuses and set(statuses) <= {200, 502}, statuses
        stack.close()  # every descriptor back, once the proxy has seen the clients go
        wait_until(lambda: open_files(proxy) < 40, "the proxy to close the idle clients")
        client = RawClient(proxy.port)
        try:
            assert client.request(b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n").status == 200
        finally:
            client.close()
