# SIGTERM: stop accepting, finish the exchange in flight with an announced close, close idle
# keep-alive connections, serve what waited in the accept queues, exit 0.
from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import threading

import pytest

from tests.e2e.rawclient import RawClient, RawResponse
from tests.e2e.servers import Proxy, ScriptedUpstream, answer_ok, run_proxy

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
