# SIGTERM: stop accepting, finish the exchange in flight with an announced close, close idle
# keep-alive connections, serve what waited in the accept queues, exit 0.
from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.dns import ThreadedDns
from tests.e2e.rawclient import RawClient, RawResponse
from tests.e2e.servers import (
    ROOT,
    START_TIMEOUT,
    Proxy,
    ScriptedUpstream,
    answer_ok,
    free_port,
    render_config,
    run_proxy,
    stop_process,
)

EXIT_TIMEOUT = 20.0


def test_sigterm_finishes_in_flight_exchange_and_closes_idle_connections() -> None:
    release = threading.Event()

    def slow_answer(sock: socket.socket, head: bytes) -> None:
        if b"/slow" in head:
            release.wait(10)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    with ScriptedUpstream(slow_answer) as upstream, run_proxy(upstream.port) as proxy:
        idle = RawClient(proxy.port)
        busy = RawClient(proxy.port)
        try:
            assert idle.request(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n").status == 200
            busy.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            for _ in range(1000):  # at most 10 s for the slow request to reach the upstream
                if len(upstream.heads) >= 2:
                    break
                threading.Event().wait(0.01)
            assert len(upstream.heads) == 2
            proxy.proc.send_signal(signal.SIGTERM)
            assert idle.at_eof(), "an idle keep-alive connection is closed on SIGTERM"
            release.set()
            resp = busy.read_response()
            assert resp.status == 200 and resp.body == b"ok"
            assert resp.announces_close, "the response in flight announces the close"
            assert busy.at_eof()
        finally:
            release.set()
            idle.close()
            busy.close()
        assert proxy.proc.wait(EXIT_TIMEOUT) == 0
        assert "drained" in proxy.log()


def read_or_explain(client: RawClient, proxy: Proxy) -> RawResponse:
    """The client's response; a reset fails with what the proxy logged and how it ended."""
    try:
        return client.read_response()
    except OSError as err:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proxy.proc.wait(EXIT_TIMEOUT)
        pytest.fail(f"{err!r}; proxy exit status {proxy.proc.returncode}; log:\n{proxy.log()}")


@pytest.mark.parametrize(
    ("use_uvloop", "idle_grace"),
    [(True, 1.0), (False, 1.0), (True, 0.0)],
    ids=["uvloop", "asyncio", "no-idle-grace"],
)
def test_connections_waiting_in_the_accept_queue_are_served_not_reset(
    use_uvloop: bool, idle_grace: float
) -> None:
    # Closing a listening socket resets what the kernel queued for it. Clients that connect
    # just before a drain (injected closes make many reconnect) must get their answer, even
    # when idle connections are closed at once (idle_grace = 0): these are not idle, their
    # request has not been read yet.
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(upstream.port, uvloop=use_uvloop, drain={"idle_grace": idle_grace}) as proxy,
    ):
        proxy.proc.send_signal(signal.SIGSTOP)  # the kernel queues; nobody accepts
        clients = [RawClient(proxy.port) for _ in range(20)]
        try:
            for client in clients:
                client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            proxy.proc.send_signal(signal.SIGTERM)
            proxy.proc.send_signal(signal.SIGCONT)
            answers = [read_or_explain(client, proxy) for client in clients]
        finally:
            proxy.proc.send_signal(signal.SIGCONT)
            for client in clients:
                client.close()
        assert [(a.status, a.announces_close) for a in answers] == [(200, True)] * 20
        assert proxy.proc.wait(EXIT_TIMEOUT) == 0


def test_a_stop_signal_while_starting_drains_once_started_not_kills(tmp_path: Path) -> None:
    # SIGTERM can come at any moment of a start (an orchestrator's stop right after it
    # scheduled the proxy): it must get the graceful path, not the default action that kills
    # the process with whatever it accepted. Here it comes during the upstream's start-up
    # DNS lookup, which the name server holds up by dropping the first query.
    with ThreadedDns() as dns, ScriptedUpstream(answer_ok) as upstream:
        dns.set(["127.0.0.1"])
        dns.mode("drop")
        config = tmp_path / "migproxy.toml"
        config.write_text(
            render_config(
                {
                    "listen": {"address": f"127.0.0.1:{free_port()}"},
                    "upstream": dns.upstream(upstream.port),
                    "admin": {"address": f"127.0.0.1:{free_port()}"},
                }
            )
        )
        log = tmp_path / "migproxy.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "migproxy", "run", "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while dns.server.queries == 0:  # it is resolving: past its handlers' set-up
                assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            dns.mode("answer")  # its second attempt, a second later, is answered
            assert proc.wait(EXIT_TIMEOUT) == 0, log.read_text()
        finally:
            stop_process(proc)
        assert "drained" in log.read_text()
