# Active health checks: one HealthChecker per upstream address probes it on a timer and tells
# its owner when the address is ejected or readmitted. The judging is pure and lives in
# migproxy.policy.health (rise/fall state, the inconclusive rule); this module does the I/O,
# keeps the schedule and measures how late the event loop was.
#
# Rules:
# - The task never raises: any OSError or bad answer is a failed check, a timeout while the
#   proxy itself was late is inconclusive, and a bug of ours is logged and judged inconclusive.
# - Time is the loop's clock (loop.time()): lags are measured against the timers it schedules.
# - A check closes its socket as soon as it has the status line, so the TIME_WAIT state stays
#   on our side and not on the backend's.
from __future__ import annotations

import asyncio
import logging
import os
import random
import re
from collections.abc import Callable
from typing import cast

from migproxy.config import Address, HealthConfig
from migproxy.policy.health import HealthState, is_inconclusive
from migproxy.stats import HealthCheck, Stats

log = logging.getLogger("migproxy")

# Each interval is drawn from interval x [0.9, 1.1] so that the checks of many addresses,
# started together, spread out instead of arriving at the backends in bursts.
JITTER = 0.1
# An answer whose first line is longer than this is not an HTTP/1 status line.
MAX_STATUS_LINE = 1024
_STATUS_LINE = re.compile(rb"HTTP/1\.[0-9] ([0-9]{3})(?: [^\r\n]*)?\r?\n")


class _CheckFailed(Exception):
    """A check the backend failed conclusively; str() is the reason."""


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.errno:
        return os.strerror(err.errno).lower()  # "connection refused", the same on every loop
    return str(err) or type(err).__name__


class _StatusLineReader(asyncio.Protocol):
    """Sends the check's request and resolves `status` with the answer's status code."""

    def __init__(self, request: bytes, status: asyncio.Future[int]) -> None:
        self.request = request
        self.status = status
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.status.done():
            return
        self.buffer += data
        end = self.buffer.find(b"\n")
        if end < 0:
            if len(self.buffer) > MAX_STATUS_LINE:
                self._fail("status line too long")
            return
        line = self.buffer[: end + 1]
        match = _STATUS_LINE.fullmatch(line)
        if match is None:
            self._fail(f"invalid status line {line[:64]!r}")
        else:
            self.status.set_result(int(match[1]))

    def eof_received(self) -> bool | None:
        self._fail("connection closed before the status line")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail("connection closed before the status line" if exc is None else _describe(exc))

    def _fail(self, reason: str) -> None:
        if not self.status.done():
            self.status.set_exception(_CheckFailed(reason))


class HealthChecker:
    """Checks one upstream address every `interval` (with jitter) until stopped.

    `on_change` is called with the new state on each transition: False when the address is
    ejected, True when it is readmitted. The address starts healthy (see HealthState).
    """

    def __init__(
        self,
        address: Address,
        config: HealthConfig,
        host: bytes,
        stats: Stats,
        on_change: Callable[[bool], None],
        *,
        rng: random.Random | None = None,
    ) -> None:
        """
        Args:
            address: the upstream address to check: an IP address and a port.
            config: the [upstream.health] settings.
            host: the Host header of an http check.
            stats: where each check's outcome is counted.
            on_change: called with the new state on each transition.
            rng: the source of the interval jitter (tests pass a seeded one).

        Raises:
            ValueError: `host` contains a line break.
        """
        if b"\r" in host or b"\n" in host:
            raise ValueError(f"invalid Host header value {host!r}")
        self.address = address
        self.config = config
        self.stats = stats
        self.on_change = on_change
        self.state = HealthState(config.rise, config.fall)
        # The reason of the most recent failed check, kept after a recovery (admin API).
        self.last_failure: str | None = None
        self._rng = rng if rng is not None else random.Random()
        self._request = (
            b"GET %b HTTP/1.1\r\nHost: %b\r\nUser-Agent: migproxy-health-check\r\n"
            b"Connection: close\r\n\r\n" % (config.path.encode("ascii"), host)
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        return self.state.healthy

    def start(self) -> None:
        """Start checking in a task of the running loop; the first check runs at once."""
        if self._task is not None:
            raise RuntimeError(f"health checks of {self.address} already started")
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(loop.time()), name=f"health {self.address}")

    async def stop(self) -> None:
        """Cancel the checks and wait until the check in flight has closed its socket."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # wait() rather than awaiting the task: a cancellation of our caller still propagates.
        await asyncio.wait([task])

    async def _run(self, scheduled: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            started = loop.time()
            try:
                await self._check(start_lag=max(0.0, started - scheduled))
            except Exception:
                # A bug of ours says nothing about the backend: loud, but no ejection.
                self.stats.count_health_check(HealthCheck.INCONCLUSIVE)
                log.exception("health check of upstream %s crashed", self.address)
            interval = self.config.interval * self._rng.uniform(1 - JITTER, 1 + JITTER)
            # A check that overran its slot (only when the loop was blocked) is followed at once.
            scheduled = max(started + interval, loop.time())

    async def _check(self, start_lag: float) -> None:
        """Run one check within the timeout, judge it and record the outcome."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeout
        timer = asyncio.timeout_at(deadline)
        failure: str | None
        try:
            async with timer:
                failure = await self._probe()
        except _CheckFailed as err:
            failure = str(err)
        except OSError as err:  # TimeoutError included: is it ours, or the kernel's?
            if not timer.expired():
                failure = _describe(err)
            else:
                deadline_lag = loop.time() - deadline
                timeout = self.config.timeout
                if is_inconclusive(
                    timed_out=True, timeout=timeout, start_lag=start_lag, deadline_lag=deadline_lag
                ):
                    self.stats.count_health_check(HealthCheck.INCONCLUSIVE)
                    log.debug(
                        "health check of upstream %s inconclusive: timed out, but the proxy was"
                        " %.3f s late to start it and %.3f s late at its deadline",
                        self.address,
                        start_lag,
                        deadline_lag,
                    )
                    return
                failure = f"timeout after {timeout} s"
        self._record(failure)

    async def _probe(self) -> str | None:
        """One check, without its timeout: None if the address is healthy, else the reason."""
        loop = asyncio.get_running_loop()
        host, port = self.address.host, self.address.port
        if self.config.check == "tcp":
            transport, _ = await loop.create_connection(asyncio.Protocol, host, port)
            transport.abort()
            return None
        status: asyncio.Future[int] = loop.create_future()
        transport, _ = await loop.create_connection(
            lambda: _StatusLineReader(self._request, status), host, port
        )
        try:
            code = await status
        finally:
            # Nothing of ours is left to send, and abort() never waits on a write buffer that
            # a stalled backend would not drain.
            transport.abort()
        return None if 200 <= code < 400 else f"status {code}"

    def _record(self, failure: str | None) -> None:
        ok = failure is None
        self.stats.count_health_check(HealthCheck.OK if ok else HealthCheck.FAILED)
        if failure is not None:
            self.last_failure = failure
            log.debug("health check of upstream %s failed: %s", self.address, failure)
        change = self.state.record(ok)
        if change is None:
            return
        # One line per transition, no traceback: the reason is all an operator needs.
        if change:
            count = self.state.consecutive_successes
            checks = "1 successful check" if count == 1 else f"{count} successful checks"
            log.warning("upstream %s readmitted after %s", self.address, checks)
        else:
            count = self.state.consecutive_failures
            checks = (
                "1 failed health check"
                if count == 1
                else f"{count} consecutive failed health checks"
            )
            log.warning("upstream %s ejected: %s (last: %s)", self.address, checks, failure)
        try:
            self.on_change(change)
        except Exception:
            log.exception("upstream %s: the health change handler failed", self.address)

    def __repr__(self) -> str:
        return f"<HealthChecker {self.address} {self.state!r} last_failure={self.last_failure!r}>"
