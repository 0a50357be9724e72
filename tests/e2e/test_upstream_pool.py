# Pool limits through the proxy: connections older than upstream.max_age are retired, idle or
# after their exchange, and counted by reason; an idle connection is reused before that.
from __future__ import annotations

import contextlib
import time

from tests.e2e.rawclient import RawClient
from tests.e2e.scrape import samples, value
from tests.e2e.servers import ScriptedUpstream, answer_ok, run_proxy

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
WAIT_LIMIT = 10.0


def test_connections_past_max_age_are_retired() -> None:
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(upstream.port, upstream={"max_age": 1.0}) as proxy,
        contextlib.closing(RawClient(proxy.port)) as client,
    ):
        assert client.request(GET).status == 200
        assert client.request(GET).status == 200  # reused: younger than max_age
        assert upstream.connections == 1
        deadline = time.monotonic() + WAIT_LIMIT
        while True:  # the idle connection is retired by the sweep once it is 1 s old
            found = samples(proxy.admin_url)
            retired = value(
                found, "migproxy_upstream_connections_closed_total", vip="default", reason="max_age"
            )
            if retired == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert retired == 1
        assert client.request(GET).status == 200
        assert upstream.connections == 2  # a new connection for the next request
