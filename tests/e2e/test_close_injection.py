# Connection: close injection seen from a raw socket: the share of announced closes, that every
# announced close is followed by the server's FIN, and that no close is ever unannounced.
from __future__ import annotations

import pytest

from tests.e2e.rawclient import RawClient
from tests.e2e.servers import ScriptedUpstream, answer_ok, run_proxy

GET = b"GET /n HTTP/1.1\r\nHost: test\r\n\r\n"


def count_closes(port: int, total: int) -> tuple[int, int]:
    """Send `total` keep-alive requests; return (announced closes, connections used).

    Asserts on the way that each announced close is followed by EOF and that a connection is
    never closed without an announcement (the next request on it would fail).
    """
    closes = 0
    connections = 1
    client = RawClient(port)
    try:
        for _ in range(total):
            resp = client.request(GET)
            assert resp.status == 200 and resp.body == b"ok"
            if resp.announces_close:
                closes += 1
                assert client.at_eof(), "announced close not followed by the server's FIN"
                client.close()
                client = RawClient(port)
                connections += 1
    finally:
        client.close()
    return closes, connections


def test_ratio_share_over_20000_requests() -> None:
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(upstream.port, close={"ratio": 0.1, "seed": 7}) as proxy,
    ):
        closes, connections = count_closes(proxy.port, 20_000)
    share = closes / 20_000
    assert 0.085 <= share <= 0.115, share
    assert connections == closes + 1
    # Upstream connections are pooled: the injected closes are client-side only.
    assert upstream.connections <= 2


@pytest.mark.parametrize(("ratio", "expected"), [(0.0, 0), (1.0, 500)], ids=["never", "always"])
def test_ratio_extremes_are_exact(ratio: float, expected: int) -> None:
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(upstream.port, close={"ratio": ratio}) as proxy,
    ):
        closes, _ = count_closes(proxy.port, 500)
    assert closes == expected


def test_post_on_connection_chosen_for_close_completes(backend_port: int) -> None:
    body = b"x" * 200_000
    with run_proxy(backend_port, close={"ratio": 1.0}) as proxy:
        client = RawClient(proxy.port)
        try:
            resp = client.request(
                b"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%b"
                % (len(body), body)
            )
            assert resp.status == 200
            assert resp.body == b"200000\n"
            assert resp.announces_close
            assert client.at_eof()
        finally:
            client.close()


def test_pipelined_requests_after_announced_close_are_dropped() -> None:
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(upstream.port, close={"ratio": 1.0}) as proxy,
    ):
        client = RawClient(proxy.port)
        try:
            client.send(GET * 3)
            resp = client.read_response()
            assert resp.announces_close
            assert client.at_eof()
        finally:
            client.close()
        assert len(upstream.heads) == 1
