# TCP keep-alive end to end (#4): [upstream.tcp_keepalive] and [listen.tcp_keepalive] reach
# the proxy's sockets (the kernel shows their keep-alive timer in `ss -tnoi`), an idle pooled
# connection to a backend that vanished silently is detected and retired within
# idle + interval x count seconds, and a request in flight when the backend vanishes ends in
# a 502 or 504 within a bounded time instead of hanging.
#
# The vanishing is tests/e2e/blackhole.py (nftables: needs root; fails under CI=true without
# it).
from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict

import pytest

from migproxy.config import TcpKeepaliveConfig
from tests.e2e.blackhole import TcpSocket, blackhole, require_blackhole, tcp_sockets
from tests.e2e.rawclient import RawClient
from tests.e2e.scrape import samples
from tests.e2e.servers import ScriptedUpstream, run_backend, run_proxy

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
FAST_PROBES = TcpKeepaliveConfig(enabled=True, idle=1, interval=1, count=2)  # found in 3 s
FAST = asdict(FAST_PROBES)  # as the [upstream.tcp_keepalive] table
MARGIN = 5.0  # seconds allowed beyond the keep-alive's own detection time
DETECTION_BOUND = FAST_PROBES.detection_seconds() + MARGIN
IN_FLIGHT_BOUND = 12.0  # most seconds a request to a vanished backend may take to fail
SETTLE = 2.0  # most seconds for a socket's timer to show in ss after an exchange
LINGER: dict[str, object] = {"linger": 0.5}  # short, so stopping the proxy is quick
LOOPS = pytest.mark.parametrize("use_uvloop", [True, False], ids=["uvloop", "asyncio"])
UPSTREAM_CLOSES = "migproxy_upstream_connections_closed_total"


def wait_until(condition: Callable[[], bool], bound: float, what: str) -> float:
    """Poll `condition` until it holds; return the seconds it took, fail after `bound`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > bound:
            pytest.fail(f"{what}: not within {bound} s")
        time.sleep(0.1)
    return time.monotonic() - start


def upstream_sockets(backend_port: int) -> list[TcpSocket]:
    """The proxy's established connections to the backend (its side of them)."""
    return [s for s in tcp_sockets(backend_port) if s.peer_port == backend_port]


def upstream_closes(admin_url: str) -> float:
    return sum(v for (name, _), v in samples(admin_url).items() if name == UPSTREAM_CLOSES)


@pytest.fixture
def client() -> Iterator[Callable[[int], RawClient]]:
    """Opens RawClients, with a bounded timeout, and closes them all at the end."""
    opened: list[RawClient] = []

    def open_client(port: int) -> RawClient:
        opened.append(RawClient(port, timeout=IN_FLIGHT_BOUND))
        return opened[-1]

    yield open_client
    for raw in opened:
        raw.close()


@LOOPS
def test_upstream_connections_probe_with_the_configured_idle(
    use_uvloop: bool, client: Callable[[int], RawClient]
) -> None:
    idle = 17  # not the upstream default (30) nor the kernel's (7200)
    keepalive = {"enabled": True, "idle": idle, "interval": 3, "count": 4}
    with (
        run_backend() as backend,
        run_proxy(
            backend, uvloop=use_uvloop, close=LINGER, upstream={"tcp_keepalive": keepalive}
        ) as proxy,
    ):
        assert client(proxy.port).request(GET).status == 200

        def probing() -> bool:
            found = upstream_sockets(backend)
            return bool(found) and all(s.has_keepalive_timer for s in found)

        wait_until(probing, SETTLE, "keep-alive timer on the pooled upstream connections")
        for pooled in upstream_sockets(backend):
            assert pooled.timer_left is not None and pooled.timer_left <= idle, pooled.line


@LOOPS
@pytest.mark.parametrize("enabled", [True, False], ids=["enabled", "disabled"])
def test_client_connections_probe_when_listen_keepalive_is_enabled(
    use_uvloop: bool, enabled: bool, client: Callable[[int], RawClient]
) -> None:
    idle = 23
    keepalive = {"enabled": enabled, "idle": idle, "interval": 3, "count": 4}
    with (
        run_backend() as backend,
        run_proxy(
            backend, uvloop=use_uvloop, close=LINGER, listen={"tcp_keepalive": keepalive}
        ) as proxy,
    ):
        raw = client(proxy.port)
        assert raw.request(GET).status == 200
        client_port = raw.sock.getsockname()[1]

        def proxy_side() -> TcpSocket:
            (found,) = [s for s in tcp_sockets(client_port) if s.local_port == proxy.port]
            return found

        if enabled:
            wait_until(
                lambda: proxy_side().has_keepalive_timer, SETTLE, "keep-alive timer, proxy side"
            )
            side = proxy_side()
            assert side.timer_left is not None and side.timer_left <= idle, side.line
        else:
            # Once the response is acknowledged (no retransmission timer), no timer at all.
            wait_until(lambda: proxy_side().timer != "on", SETTLE, "response acknowledged")
            side = proxy_side()
            assert side.timer is None, side.line


@LOOPS
def test_idle_pooled_connection_to_a_vanished_backend_is_retired(
    use_uvloop: bool, client: Callable[[int], RawClient]
) -> None:
    require_blackhole()
    with (
        run_backend() as backend,
        run_proxy(
            backend, uvloop=use_uvloop, close=LINGER, upstream={"tcp_keepalive": FAST}
        ) as proxy,
    ):
        raw = client(proxy.port)
        assert raw.request(GET).status == 200
        wait_until(lambda: bool(upstream_sockets(backend)), SETTLE, "a pooled connection")
        closes = upstream_closes(proxy.admin_url)
        with blackhole(backend):
            wait_until(
                lambda: not upstream_sockets(backend),
                DETECTION_BOUND,
                "the kernel fails the idle connections to the vanished backend",
            )
            wait_until(
                lambda: upstream_closes(proxy.admin_url) > closes,
                SETTLE,
                f"the proxy counts the close ({UPSTREAM_CLOSES})",
            )
        # The dead connection left the pool: the next request opens a new one and succeeds.
        assert raw.request(GET).status == 200


class Vanishing:
    """A ScriptedUpstream script that never answers; `received` is set when a head arrives."""

    def __init__(self) -> None:
        self.received = threading.Event()
        self.release = threading.Event()

    def __call__(self, sock: socket.socket, head: bytes) -> None:
        self.received.set()
        self.release.wait(IN_FLIGHT_BOUND)


# How each configuration notices that the backend went away during the exchange:
# - keep-alive: the request was delivered, so nothing is unacknowledged and the idle
#   connection is probed; the kernel fails it (ETIMEDOUT), and the proxy answers 502.
# - user_timeout: the rest of the request body is never acknowledged; TCP_USER_TIMEOUT
#   fails the connection after 2 s (keep-alive does not probe while data is in flight): 502.
# - response_timeout: no probing soon enough (idle 30 s); the proxy's own timeout: 504.
IN_FLIGHT_CASES = [
    pytest.param({"response_timeout": 60.0}, FAST, False, 502, id="keepalive"),
    pytest.param(
        {"response_timeout": 60.0}, {**FAST, "user_timeout": 2.0}, True, 502, id="user_timeout"
    ),
    pytest.param({"response_timeout": 3.0}, {"idle": 30}, False, 504, id="response_timeout"),
]


@pytest.mark.parametrize(("upstream", "keepalive", "body_after", "status"), IN_FLIGHT_CASES)
def test_request_in_flight_when_the_backend_vanishes_fails_clearly(
    upstream: dict[str, object],
    keepalive: dict[str, object],
    body_after: bool,
    status: int,
) -> None:
    require_blackhole()
    script = Vanishing()
    head = b"POST /work HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n"
    before, after = (b"12345", b"67890") if body_after else (b"1234567890", b"")
    # A scripted upstream rather than the demo backend: it tells the test when the request
    # has arrived, and its hanging handler stops at once (aiohttp would wait 60 s for it).
    with (
        ScriptedUpstream(script) as backend,
        run_proxy(
            backend.port,
            upstream={**upstream, "tcp_keepalive": keepalive},
            close=LINGER,
        ) as proxy,
    ):
        raw = RawClient(proxy.port, timeout=IN_FLIGHT_BOUND)
        try:
            raw.send(head + before)
            assert script.received.wait(IN_FLIGHT_BOUND), "the request never reached upstream"
            with blackhole(backend.port):
                start = time.monotonic()
                if after:
                    raw.send(after)
                try:
                    response = raw.read_response()
                except TimeoutError:
                    pytest.fail(f"no response within {IN_FLIGHT_BOUND} s: the proxy hangs")
                elapsed = time.monotonic() - start
        finally:
            # Reset, not FIN, before the proxy stops: a client that only half-closed still
            # gets its response, so an exchange left in flight (when the proxy failed to
            # notice) would hold the proxy's drain until it is killed.
            raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw.close()
            script.release.set()
    assert response.status == status, response.head
    assert elapsed < IN_FLIGHT_BOUND
