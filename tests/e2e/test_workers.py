# `[server] workers = 2`: a supervisor and two worker processes on one listening address.
# Connections reach both workers, the supervisor's /metrics adds their counts up exactly, a
# killed worker is started again, and reloads, epochs and drains reach every worker.
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from tests.e2e.dns import NAME, ThreadedDns
from tests.e2e.rawclient import RawClient
from tests.e2e.scrape import fetch, post, samples, value
from tests.e2e.servers import (
    Proxy,
    ScriptedUpstream,
    answer_ok,
    free_port,
    render_config,
    rewrite,
    run_proxy,
    stop_process,
)

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
WAIT_LIMIT = 15.0
ACCESS = re.compile(r"worker (\d): 127\.0\.0\.1 \"GET")


@contextlib.contextmanager
def two_workers(**close: object) -> Iterator[Proxy]:
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(
            upstream.port,
            server={"workers": 2},
            log={"access_log": True},
            close={"linger": 0.2, **close},
        ) as proxy,
    ):
        wait_ready(proxy)
        yield proxy


def wait_ready(proxy: Proxy) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while fetch(proxy.admin_url + "/readyz")[0] != 200:
        assert time.monotonic() < deadline, "the workers never became ready"
        time.sleep(0.1)


def workers(proxy: Proxy) -> list[dict[str, object]]:
    status, text = fetch(proxy.admin_url + "/workers")
    assert status == 200
    result: list[dict[str, object]] = json.loads(text)
    return result


def one_request_each(proxy: Proxy, connections: int) -> list[bool]:
    """`connections` new connections, one GET each; whether each response announced close."""
    closes = []
    for _ in range(connections):
        with contextlib.closing(RawClient(proxy.port)) as client:
            resp = client.request(GET)
            assert resp.status == 200
            closes.append(resp.announces_close)
    return closes


def test_connections_reach_both_workers_and_metrics_add_up() -> None:
    with two_workers() as proxy:
        assert [w["alive"] for w in workers(proxy)] == [True, True]
        one_request_each(proxy, 40)
        found = samples(proxy.admin_url)
        fresh = value(
            found,
            "migproxy_requests_total",
            vip="default",
            connection="fresh",
            cohort="current",
            status_class="2xx",
        )
        assert fresh == 40
        served_by = Counter(ACCESS.findall(proxy.log()))
        assert set(served_by) == {"0", "1"} and sum(served_by.values()) == 40


def kill_first_worker(proxy: Proxy) -> dict[str, object]:
    """SIGKILL worker 0 and wait until the supervisor has started it again; its new state."""
    victim = workers(proxy)[0]["pid"]
    assert isinstance(victim, int)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + WAIT_LIMIT
    while True:
        first = workers(proxy)[0]
        if first["alive"] and first["pid"] != victim:
            return first
        assert time.monotonic() < deadline, "the worker was not started again"
        time.sleep(0.1)


def test_a_killed_worker_is_started_again() -> None:
    with two_workers() as proxy:
        first = kill_first_worker(proxy)
        assert first["restarts"] == 1
        wait_ready(proxy)
        assert one_request_each(proxy, 10) == [False] * 10
        assert "exited with -9; starting it again" in proxy.log()


def test_a_dead_workers_gauges_leave_the_metrics() -> None:
    # The ratio gauge aggregates with max over the workers' files: the dead worker's 0.5 would
    # hide every lower ratio set by reload afterwards.
    with two_workers(ratio=0.5) as proxy:
        kill_first_worker(proxy)
        wait_ready(proxy)
        rewrite(proxy, close={"ratio": 0.1})
        assert post(proxy.admin_url + "/reload")[0] == 200
        assert value(samples(proxy.admin_url), "migproxy_close_ratio", vip="default") == 0.1


def test_reload_and_epoch_reach_every_worker() -> None:
    with two_workers() as proxy:
        rewrite(proxy, close={"ratio": 1.0})
        status, answer = post(proxy.admin_url + "/reload")
        assert status == 200 and answer["reloaded"] is True
        assert one_request_each(proxy, 20) == [True] * 20  # whichever worker answers

        rewrite(proxy, close={"ratio": 2.0})
        status, answer = post(proxy.admin_url + "/reload")
        assert status == 400 and "close.ratio: must be" in str(answer["message"])

        status, state = post(proxy.admin_url + "/migration/epoch")
        assert status == 200 and state["epoch"] is not None
        epochs = re.findall(r"worker (\d): migration epoch (\S+)", proxy.log())
        assert sorted(index for index, _ in epochs) == ["0", "1"]
        assert len({moment for _, moment in epochs}) == 1  # one epoch, set once


def test_a_restarted_worker_has_the_epoch_its_siblings_have() -> None:
    with two_workers() as proxy:
        status, state = post(proxy.admin_url + "/migration/epoch")
        assert status == 200 and state["epoch"] is not None
        kill_first_worker(proxy)
        wait_ready(proxy)
        status, text = fetch(proxy.admin_url + "/migration")  # worker 0's: the new one
        assert status == 200 and json.loads(text)["epoch"] == state["epoch"]


def test_a_restarted_worker_runs_the_config_its_siblings_have() -> None:
    # An edit that needs a restart (the listen backlog) refuses the whole reload: the workers
    # keep ratio 0. A worker started again must not take the file as it is now.
    with two_workers() as proxy:
        rewrite(proxy, listen={"backlog": 64}, close={"ratio": 1.0})
        status, answer = post(proxy.admin_url + "/reload")
        assert status == 400 and "listen.backlog" in str(answer["message"])
        kill_first_worker(proxy)
        wait_ready(proxy)
        status, text = fetch(proxy.admin_url + "/config")  # worker 0's: the new one
        config = json.loads(text)
        assert status == 200 and config["close"]["ratio"] == 0.0
        assert config["listen"]["backlog"] == 1024
        assert one_request_each(proxy, 10) == [False] * 10


def test_an_epoch_set_while_a_worker_is_down_succeeds_and_reaches_it() -> None:
    with two_workers() as proxy:
        victim = workers(proxy)[1]["pid"]
        assert isinstance(victim, int)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + WAIT_LIMIT
        while workers(proxy)[1]["alive"]:  # the supervisor saw it die: 1 s before a restart
            assert time.monotonic() < deadline, "the worker did not die"
            time.sleep(0.02)
        status, state = post(proxy.admin_url + "/migration/epoch")
        assert status == 200, state  # not a 503 inviting a retry, which would start another
        wait_ready(proxy)  # both workers up again
        moment = re.escape(str(re.findall(r"worker 0: migration epoch (\S+)", proxy.log())[-1]))
        while not re.search(rf"worker 1: migration epoch {moment}", proxy.log()):
            assert time.monotonic() < deadline, "the restarted worker has not the epoch"
            time.sleep(0.1)


def test_sigterm_drains_every_worker() -> None:
    with two_workers() as proxy, contextlib.closing(RawClient(proxy.port)) as client:
        assert not client.request(GET).announces_close
        proxy.proc.send_signal(signal.SIGTERM)
        assert proxy.proc.wait(WAIT_LIMIT) == 0
        assert proxy.log().count("drained") == 2


def test_one_worker_samples_the_watched_name_and_every_worker_gets_its_epoch() -> None:
    with ThreadedDns() as dns, ScriptedUpstream(answer_ok) as upstream:
        dns.weighted({"127.0.0.2": 1.0, "127.0.0.3": 0.0})
        migration = {
            "watch_name": NAME,
            "vip_addresses": ["127.0.0.2"],
            "nameservers": [f"127.0.0.1:{dns.port}"],
            "sample_interval": 0.2,
            "samples": 20,
        }
        with run_proxy(upstream.port, server={"workers": 2}, migration=migration) as proxy:
            wait_ready(proxy)
            deadline = time.monotonic() + WAIT_LIMIT
            while "migration watch" not in proxy.log():  # the baseline sample
                assert time.monotonic() < deadline, "the watched name was never sampled"
                time.sleep(0.1)
            dns.weighted({"127.0.0.2": 0.0, "127.0.0.3": 1.0})  # the GSLB moves everyone away
            while len(re.findall(r"worker \d: migration epoch", proxy.log())) < 2:
                assert time.monotonic() < deadline, "the epoch did not reach both workers"
                time.sleep(0.1)
            log = proxy.log()
            assert log.count("a new epoch") == 1  # sampled by one worker only
            epochs = re.findall(r"worker (\d): migration epoch (\S+)", log)
            assert sorted(index for index, _ in epochs) == ["0", "1"]
            assert len({moment for _, moment in epochs}) == 1
            share = value(samples(proxy.admin_url), "migproxy_migration_dns_share", vip="default")
            assert share == 0.0


def test_a_token_that_is_not_utf8_is_refused_not_a_500() -> None:
    with (
        ScriptedUpstream(answer_ok) as upstream,
        run_proxy(upstream.port, admin={"token": "s3cret"}) as proxy,
        socket.create_connection(("127.0.0.1", proxy.admin_port), timeout=5) as sock,
    ):
        sock.sendall(
            b"POST /reload HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \xff\xfe\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 401 "), answer


def is_ready(admin_port: int) -> bool:
    try:
        return fetch(f"http://127.0.0.1:{admin_port}/readyz")[0] == 200
    except OSError:  # the admin endpoint is not up yet
        return False


def sighup_handled(pid: int) -> bool:
    """Whether SIGHUP is ignored or caught by `pid` (bit 0 of SigIgn / SigCgt)."""
    masks = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, val = line.partition(":")
        masks[key] = int(val.strip() or "0", 16) if key in ("SigIgn", "SigCgt") else 0
    return bool((masks.get("SigIgn", 0) | masks.get("SigCgt", 0)) & 1)


def test_sighup_during_start_up_kills_no_worker(tmp_path: Path) -> None:
    # Reload signals from the moment the proxy process handles them (its interpreter's own
    # start-up is before that) until it is ready: the supervisor must not pass them to workers
    # still starting (SIGHUP's default action would kill them); it delivers them once they are up.
    with ScriptedUpstream(answer_ok) as upstream:
        port, admin_port = free_port(), free_port()
        config = tmp_path / "migproxy.toml"
        config.write_text(
            render_config(
                {
                    "listen": {"address": f"127.0.0.1:{port}"},
                    "upstream": {"address": f"127.0.0.1:{upstream.port}"},
                    "admin": {"address": f"127.0.0.1:{admin_port}"},
                    "server": {"workers": 2},
                }
            )
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "migproxy", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + WAIT_LIMIT
            while not sighup_handled(proc.pid):
                assert time.monotonic() < deadline, "the proxy never handled SIGHUP"
                time.sleep(0.01)
            while not is_ready(admin_port):
                assert proc.poll() is None, "the proxy died of a SIGHUP during its start-up"
                assert time.monotonic() < deadline, "the proxy never became ready"
                proc.send_signal(signal.SIGHUP)
                time.sleep(0.05)
            status, text = fetch(f"http://127.0.0.1:{admin_port}/workers")
            assert status == 200 and [w["alive"] for w in json.loads(text)] == [True, True]
        finally:
            stop_process(proc)


def test_sigterm_during_a_restart_back_off_still_stops_the_proxy() -> None:
    with two_workers() as proxy:
        pids = [int(str(w["pid"])) for w in workers(proxy)]
        os.kill(pids[0], signal.SIGKILL)
        time.sleep(0.2)  # the supervisor has seen it die and waits to start it again
        proxy.proc.send_signal(signal.SIGTERM)
        assert proxy.proc.wait(WAIT_LIMIT) == 0, "the supervisor did not stop"
        for pid in pids[1:]:
            assert not Path(f"/proc/{pid}").exists(), "a worker outlived its supervisor"


def test_a_start_that_fails_leaves_no_run_directory(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = tmp_path / "migproxy.toml"
        config.write_text(
            render_config(
                {
                    "listen": {"address": f"127.0.0.1:{port}"},
                    "upstream": {"address": "127.0.0.1:9"},
                    "server": {"workers": 2},
                }
            )
        )
        runs = tmp_path / "tmp"
        runs.mkdir()
        done = subprocess.run(
            [sys.executable, "-m", "migproxy", "run", "--config", str(config)],
            capture_output=True,
            timeout=60,
            env={**os.environ, "TMPDIR": str(runs)},
            check=False,
        )
    assert done.returncode == 1 and b"Address already in use" in done.stderr, done
    assert list(runs.iterdir()) == []


def test_workers_drain_and_exit_when_their_supervisor_is_killed() -> None:
    # Orphaned workers would keep the address: a new proxy could not start on it.
    with two_workers() as proxy:
        pids = [int(str(w["pid"])) for w in workers(proxy)]
        proxy.proc.kill()
        proxy.proc.wait(WAIT_LIMIT)
        try:
            deadline = time.monotonic() + WAIT_LIMIT
            while any(Path(f"/proc/{pid}").exists() for pid in pids):
                assert time.monotonic() < deadline, "a worker outlived its supervisor"
                time.sleep(0.1)
        finally:
            for pid in pids:  # no orphan outlives the test, whatever happened
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with socket.create_server(("127.0.0.1", proxy.port)):
            pass  # the address is free again


def test_the_supervisors_config_follows_a_reload_by_signal() -> None:
    with two_workers(ratio=0.2) as proxy:
        rewrite(proxy, close={"ratio": 0.7})
        proxy.proc.send_signal(signal.SIGHUP)  # passed on to the workers, not checked here
        deadline = time.monotonic() + WAIT_LIMIT
        while True:
            status, text = fetch(proxy.admin_url + "/config")
            config = json.loads(text)
            if status == 200 and config["close"]["ratio"] == 0.7:
                break
            assert time.monotonic() < deadline, f"/config still says {config['close']}"
            time.sleep(0.1)
        assert config["admin"]["address"]["port"] == proxy.admin_port  # not a worker's own
