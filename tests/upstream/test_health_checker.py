# The health checker against real loopback servers started by each test: healthy, stalling,
# recovering, flapping, erroring and closed backends, tcp and http checks, and the late-probe
# case of issue #4 (the event loop blocked while a check is in flight is inconclusive, never a
# failure). Every test runs on uvloop and on stdlib asyncio: they order due timers and ready
# sockets differently, which is exactly where a late probe turns into a false timeout.
#
# Waits are bounded and count checks (never sleep-and-hope); every server and checker started
# is stopped before the loop closes.
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import pytest

from migproxy.config import Address, HealthConfig
from migproxy.loop import loop_factory
from migproxy.stats import HealthCheck, Stats
from migproxy.upstream.health import HealthChecker

T = TypeVar("T")
OK, FAILED, INCONCLUSIVE = HealthCheck.OK, HealthCheck.FAILED, HealthCheck.INCONCLUSIVE
WAIT = 5.0  # bound of every wait for a number of checks; the checks themselves take 0.1 s
BLOCK = 0.4  # how long the late-probe tests block the event loop (4 check timeouts)
CONFIG = HealthConfig(enabled=True, path="/healthz", interval=0.1, timeout=0.1, rise=2, fall=2)
HEALTHY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Runner:
    """Runs a test's coroutine to completion on a fresh loop, within a time bound."""

    def __init__(self, use_uvloop: bool) -> None:
        self.use_uvloop = use_uvloop

    def __call__(self, coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        async def bounded() -> T:
            return await asyncio.wait_for(coro, timeout)

        with asyncio.Runner(loop_factory=loop_factory(self.use_uvloop)) as runner:
            return runner.run(bounded())


@pytest.fixture(params=[True, False], ids=["uvloop", "asyncio"])
def run(request: pytest.FixtureRequest) -> Runner:
    return Runner(bool(request.param))


async def wait_until(what: str, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"not reached within {timeout} s: {what}") from None


class Backend:
    """An HTTP backend on 127.0.0.1 in the test's own loop.

    `answer(n)` gives the raw answer to the n-th request (from 1), or None to stall: keep the
    connection open and never answer.
    """

    def __init__(self, answer: Callable[[int], bytes | None]) -> None:
        self.answer = answer
        self.heads: list[bytes] = []
        self.writers: set[asyncio.StreamWriter] = set()
        self.handlers: set[asyncio.Task[Any]] = set()
        self.server: asyncio.Server | None = None
        self.on_request: Callable[[int], None] = lambda n: None

    @property
    def address(self) -> Address:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return Address("127.0.0.1", port)

    async def __aenter__(self) -> Backend:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        for writer in self.writers:
            writer.close()
        if self.handlers:
            await asyncio.wait(self.handlers, timeout=WAIT)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.writers.add(writer)
        try:
            self.heads.append(await reader.readuntil(b"\r\n\r\n"))
            self.on_request(len(self.heads))
            answer = self.answer(len(self.heads))
            if answer is None:
                await reader.read()  # stalled until the checker gives up and closes
            else:
                for piece in answer.split(b"|"):  # "|" marks a pause between two writes
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.01)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the checker closed first: a tcp check, or the timeout
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self.writers.discard(writer)
            self.handlers.discard(task)


class ThreadedBackend:
    """A backend outside the test's event loop: blocking that loop does not stop it answering.

    Each request is reported to `on_request` as it arrives, then answered after `delay`.
    """

    def __init__(self, on_request: Callable[[int], None], delay: float) -> None:
        self.on_request = on_request
        self.delay = delay
        self.requests = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="threaded-backend")
        port: int = self.sock.getsockname()[1]
        self.address = Address("127.0.0.1", port)

    def __enter__(self) -> ThreadedBackend:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self.thread.join(WAIT)
        self.sock.close()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1.0)
                with contextlib.suppress(OSError):
                    self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        self.requests += 1
        self.on_request(self.requests)
        time.sleep(self.delay)
        conn.sendall(HEALTHY)


class NoJitter(random.Random):
    """Every interval exactly as configured, so a test can aim at a check's wake-up time."""

    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


@dataclass
class Watch:
    """A running checker and what it reported: transitions, and the counts at each one."""

    checker: HealthChecker
    stats: Stats
    changes: list[bool] = field(default_factory=list)
    counts_at_change: list[dict[HealthCheck, int]] = field(default_factory=list)

    def count(self, result: HealthCheck) -> int:
        return self.stats.health_checks.get(result, 0)

    def total(self) -> int:
        return sum(self.stats.health_checks.values())


@contextlib.asynccontextmanager
async def watching(
    address: Address,
    config: HealthConfig = CONFIG,
    rng: random.Random | None = None,
) -> AsyncIterator[Watch]:
    stats = Stats()
    watch: Watch

    def on_change(healthy: bool) -> None:
        watch.changes.append(healthy)
        watch.counts_at_change.append(dict(stats.health_checks))

    checker = HealthChecker(
        address,
        config,
        b"svc.example",
        stats,
        on_change,
        rng=rng if rng is not None else random.Random(4),
    )
    watch = Watch(checker, stats)
    checker.start()
    try:
        yield watch
    finally:
        await checker.stop()


def closed_port() -> Address:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return Address("127.0.0.1", port)


def warning_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def inconclusive_lags(caplog: pytest.LogCaptureFixture) -> Iterator[tuple[float, float]]:
    """(start lag, deadline lag) of every check logged as inconclusive."""
    for record in caplog.records:
        if record.name == "migproxy" and "inconclusive" in str(record.msg):
            assert isinstance(record.args, tuple)
            start_lag, deadline_lag = record.args[1:3]
            assert isinstance(start_lag, float) and isinstance(deadline_lag, float)
            yield start_lag, deadline_lag


@pytest.fixture(autouse=True)
def debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="migproxy")


# Healthy backends


def test_healthy_http_backend_stays_admitted(run: Runner, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with Backend(lambda n: HEALTHY) as backend, watching(backend.address) as watch:
            await wait_until("3 checks", lambda: watch.count(OK) >= 3)
            assert backend.heads[0] == (
                b"GET /healthz HTTP/1.1\r\nHost: svc.example\r\n"
                b"User-Agent: migproxy-health-check\r\nConnection: close\r\n\r\n"
            )
            assert watch.count(FAILED) == watch.count(INCONCLUSIVE) == 0
            assert watch.checker.healthy and watch.changes == []
            assert watch.checker.last_failure is None

    run(main())
    assert warning_lines(caplog) == []


def test_tcp_check_of_a_listening_port_is_healthy(run: Runner) -> None:
    # The backend never answers HTTP: a tcp check only needs the connect.
    async def main() -> None:
        config = replace(CONFIG, check="tcp", fall=1)
        async with Backend(lambda n: None) as backend, watching(backend.address, config) as watch:
            await wait_until("3 checks", lambda: watch.count(OK) >= 3)
            assert watch.count(FAILED) == 0 and watch.changes == []

    run(main())


# Failing backends


def test_stalled_backend_is_ejected_then_readmitted_when_it_recovers(
    run: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    stalled = True

    async def main() -> None:
        nonlocal stalled

        def answer(n: int) -> bytes | None:
            return None if stalled else HEALTHY

        async with Backend(answer) as backend, watching(backend.address) as watch:
            await wait_until("ejection", lambda: watch.changes == [False])
            assert not watch.checker.healthy
            assert watch.counts_at_change[0].get(FAILED) == 2  # fall = 2, not one more or less
            assert watch.checker.last_failure == "timeout after 0.1 s"
            stalled = False
            await wait_until("readmission", lambda: watch.changes == [False, True])
            assert watch.checker.healthy
            counts = watch.counts_at_change[1]
            assert counts.get(OK) == 2  # rise = 2
            assert watch.checker.last_failure == "timeout after 0.1 s"  # kept for the admin API
            port = backend.address.port

        assert warning_lines(caplog) == [
            f"upstream 127.0.0.1:{port} ejected: 2 consecutive failed health checks"
            " (last: timeout after 0.1 s)",
            f"upstream 127.0.0.1:{port} readmitted after 2 successful checks",
        ]
        assert all(r.exc_info is None for r in caplog.records)

    run(main())


def test_flapping_backend_is_never_ejected(run: Runner) -> None:
    # 200 and 500 alternate per request: never two failures in a row, so fall = 2 never ejects.
    def answer(n: int) -> bytes:
        return HEALTHY if n % 2 else b"HTTP/1.1 500 Internal Server Error\r\n\r\n"

    async def main() -> None:
        config = replace(CONFIG, interval=0.05, timeout=0.05)
        async with Backend(answer) as backend, watching(backend.address, config) as watch:
            await wait_until("10 checks", lambda: watch.total() >= 10)
            assert watch.count(OK) >= 5 and watch.count(FAILED) >= 4
            assert watch.changes == [] and watch.checker.healthy
            assert watch.checker.last_failure == "status 500"

    run(main())


def test_error_status_is_ejected(run: Runner, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        unavailable = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
        async with Backend(lambda n: unavailable) as backend, watching(backend.address) as watch:
            await wait_until("ejection", lambda: watch.changes == [False])
            assert watch.counts_at_change[0] == {FAILED: 2}
            await wait_until("2 more checks", lambda: watch.count(FAILED) >= 4)
            assert watch.changes == [False]  # ejected once; later failures change nothing
            port = backend.address.port
        assert warning_lines(caplog) == [
            f"upstream 127.0.0.1:{port} ejected: 2 consecutive failed health checks"
            " (last: status 503)"
        ]

    run(main())


@pytest.mark.parametrize("check", ["http", "tcp"])
def test_closed_port_is_ejected(run: Runner, check: str, caplog: pytest.LogCaptureFixture) -> None:
    address = closed_port()

    async def main() -> None:
        async with watching(address, replace(CONFIG, check=check, fall=1)) as watch:
            await wait_until("ejection", lambda: watch.changes == [False])
            assert watch.checker.last_failure == "connection refused"

    run(main())
    assert warning_lines(caplog) == [
        f"upstream {address} ejected: 1 failed health check (last: connection refused)"
    ]


@pytest.mark.parametrize(
    ("answer", "failure"),
    [
        pytest.param(HEALTHY, None, id="200"),
        pytest.param(b"HTTP/1.1 204 No Content\r\n\r\n", None, id="204"),
        pytest.param(b"HTTP/1.1 302 Found\r\nLocation: /\r\n\r\n", None, id="302"),
        pytest.param(b"HTTP/1.0 200 OK\r\n\r\n", None, id="http10"),
        pytest.param(b"HTTP/1.1 200\r\n\r\n", None, id="no-reason-phrase"),
        pytest.param(b"HTTP/1.1 200 OK\n\n", None, id="bare-lf"),
        pytest.param(b"HTT|P/1.1 2|00 OK\r|\n", None, id="status-line-in-pieces"),
        pytest.param(b"HTTP/1.1 404 Not Found\r\n\r\n", "status 404", id="404"),
        pytest.param(b"HTTP/1.1 500 Oops\r\n\r\n", "status 500", id="500"),
        pytest.param(b"", "connection closed before the status line", id="closed"),
        pytest.param(b"HTTP/1.1 200 OK", "connection closed before the status line", id="cut"),
        pytest.param(
            b"SSH-2.0-OpenSSH_9.2\r\n", "invalid status line b'SSH-2.0-OpenSSH_9.2\\r\\n'", id="ssh"
        ),
        pytest.param(b"HTTP/1.1 20 OK\r\n", "invalid status line b'HTTP/1.1 20 OK\\r\\n'", id="20"),
        pytest.param(b"x" * 2000, "status line too long", id="too-long"),
    ],
)
def test_one_answer(run: Runner, answer: bytes, failure: str | None) -> None:
    async def main() -> None:
        config = replace(CONFIG, fall=1)
        async with Backend(lambda n: answer) as backend, watching(backend.address, config) as watch:
            await wait_until("1 check", lambda: watch.total() >= 1)
            assert watch.count(INCONCLUSIVE) == 0
            assert watch.checker.last_failure == failure
            assert watch.checker.healthy is (failure is None)

    run(main())


# The late probe of issue #4: the proxy was late, not the backend.


def test_loop_blocked_across_the_deadline_is_inconclusive(
    run: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    # The backend runs in a thread and answers 20 ms after each request. When the first
    # request arrives, the proxy's loop is blocked for 4 timeouts: the answer comes in time but
    # is read late, after the deadline. With fall = 1 a single FAILED would eject.
    async def main() -> None:
        loop = asyncio.get_running_loop()

        def on_request(n: int) -> None:  # in the backend's thread
            if n == 1:
                loop.call_soon_threadsafe(time.sleep, BLOCK)

        with ThreadedBackend(on_request, delay=0.02) as backend:
            async with watching(backend.address, replace(CONFIG, fall=1)) as watch:
                await wait_until("2 checks after the block", lambda: watch.count(OK) >= 2)
                assert watch.count(INCONCLUSIVE) == 1
                assert watch.count(FAILED) == 0
                assert watch.changes == [] and watch.checker.healthy
                assert watch.checker.last_failure is None

    run(main())
    [(start_lag, deadline_lag)] = inconclusive_lags(caplog)
    assert deadline_lag > BLOCK / 2
    assert warning_lines(caplog) == []


def test_check_woken_late_is_inconclusive(run: Runner, caplog: pytest.LogCaptureFixture) -> None:
    # A stalled backend and fall = 2. The loop is blocked across the second check's scheduled
    # start: that check wakes late and is not recorded, so the first failure is not joined to
    # it. The stall is still judged once the loop is on time again: ejected at the third check.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with Backend(lambda n: None) as backend:

            def on_request(n: int) -> None:
                if n == 1:  # the first check started about now; the second is due in 0.2 s
                    loop.call_later(0.15, time.sleep, BLOCK)

            backend.on_request = on_request
            config = replace(CONFIG, interval=0.2)
            async with watching(backend.address, config, NoJitter()) as watch:
                await wait_until("ejection", lambda: watch.changes == [False])
                counts = watch.counts_at_change[0]
                assert counts.get(FAILED) == 2
                assert counts.get(INCONCLUSIVE, 0) >= 1

    run(main())
    lags = list(inconclusive_lags(caplog))
    assert any(start_lag > BLOCK / 2 for start_lag, _ in lags), lags


# Lifecycle


def test_start_and_stop(run: Runner) -> None:
    async def main() -> None:
        checker = HealthChecker(closed_port(), CONFIG, b"h", Stats(), lambda healthy: None)
        await checker.stop()  # never started: nothing to do
        checker.start()
        with pytest.raises(RuntimeError, match="already started"):
            checker.start()
        await checker.stop()
        await checker.stop()  # stopping twice is harmless
        assert "HealthChecker 127.0.0.1:" in repr(checker)

    run(main())


def test_line_break_in_host_is_refused() -> None:
    with pytest.raises(ValueError, match="Host header"):
        HealthChecker(closed_port(), CONFIG, b"a\r\nX-Evil: 1", Stats(), lambda healthy: None)


def test_failing_change_handler_is_logged_and_checks_go_on(
    run: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    def on_change(healthy: bool) -> None:
        raise RuntimeError("handler bug")

    async def main() -> None:
        stats = Stats()
        config = replace(CONFIG, fall=1)
        checker = HealthChecker(closed_port(), config, b"h", stats, on_change)
        checker.start()
        try:
            await wait_until("3 checks", lambda: stats.health_checks.get(FAILED, 0) >= 3)
        finally:
            await checker.stop()
        assert not checker.healthy

    run(main())
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "health change handler failed" in error.getMessage() and error.exc_info is not None
