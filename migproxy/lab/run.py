# Running a scenario: for each policy, a GSLB DNS server, a backend and a `migproxy run` per VIP
# and the client fleet; then the timeline (weight steps, one tick a second) and the clean-up.
#
# Rules:
# - Policies run at once (scenario.concurrent: each on its own service port, DNS server,
#   backends and proxies, all on one clock, so their steps happen at the same moment) or one
#   after the other.
# - Everything a run starts is stopped by PolicyRun.stop(), which is safe to call at any
#   point of a start, and is called from a `finally`: after an error and on Ctrl-C (asyncio
#   turns SIGINT into a cancellation of the main task) alike. Clients stop first, so that the
#   proxies' drain finds no traffic.
# - At a step, the DNS weights change first; then the policy's [close] keys are reloaded (at
#   the first step, for start = "step") and the epoch is set, on the proxy of each VIP whose
#   weight share fell. The admin API is the lab's way of setting epochs, not [migration]
#   watch_name: the lab knows the moment it changed the weights, so the measured convergence
#   is the close policy's, not the watcher's detection delay (two samples, seconds apart).
from __future__ import annotations

import asyncio
import random
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import aiohttp

from migproxy.dnsserver import DnsServer
from migproxy.lab.backend import Backend
from migproxy.lab.client import LabClient, Service
from migproxy.lab.fleet import ClientSpec
from migproxy.lab.ports import LOCAL, NEW_VIP, OLD_VIP, LabError, service_port
from migproxy.lab.proxies import (
    ProxyProcess,
    apply_close,
    scrape,
    start_epoch,
    start_proxy,
    stop_proxy,
)
from migproxy.lab.record import VIPS, ProxySeries, Recorder, RunResult
from migproxy.lab.scenario import Policy, Scenario

SERVICE_NAME = "service.lab.test"
STOP_GRACE = 2.0  # seconds clients get to finish their request in flight when stopped
TICK_TIMEOUT = 0.8  # seconds a second's scrapes may take
START_DELAY = 0.3  # seconds between the fleet's creation and its start (t = 0)


class PolicyRun:
    """One policy's DNS server, backends, proxies and fleet."""

    def __init__(self, scenario: Scenario, policy: Policy, index: int, specs: Sequence[ClientSpec]):
        self.scenario = scenario
        self.policy = policy
        self.specs = specs
        self.rng = random.Random(scenario.seed * 1000 + index)  # the GSLB's draws
        self.dns = DnsServer(LOCAL)
        self.backends = [Backend(vip) for vip in VIPS]
        self.proxies: list[ProxyProcess] = []
        self.recorder = Recorder(specs, scenario.duration)
        self.series = ProxySeries(self.recorder.slots)
        self.clients: list[LabClient] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="migproxy-lab-")
        self._seed = scenario.seed * 1000 + index * 10

    async def start(self, session: aiohttp.ClientSession) -> None:
        """Start the DNS server, backends and proxies (not the fleet).

        Raises:
            LabError: a port or address is unusable, or a proxy would not start.
        """
        first = self.scenario.weights[0]
        self.dns.set_weighted(
            SERVICE_NAME, _weights(first.old, first.new), self.scenario.ttl, self.rng
        )
        try:
            await self.dns.start()
            for backend in self.backends:
                await backend.start()
        except OSError as err:
            raise LabError(f"cannot listen on {LOCAL}: {err.strerror or err}") from None
        port = service_port((OLD_VIP, NEW_VIP))
        close = self.policy.close if self.policy.start == "start" else {}
        for i, (vip, address) in enumerate(zip(VIPS, (OLD_VIP, NEW_VIP), strict=True)):
            proxy = ProxyProcess(
                vip, address, port, self.backends[i].port, 0, self._seed + i, Path(self._tmp.name)
            )
            proxy.close = close
            self.proxies.append(proxy)
        await asyncio.gather(*(start_proxy(proxy) for proxy in self.proxies))
        await self.scrape(0, session)  # the baseline (the lab's port probes are not traffic)

    def service(self) -> Service:
        return Service(
            SERVICE_NAME, self.proxies[0].port, (LOCAL, self.dns.port), (OLD_VIP, NEW_VIP)
        )

    def start_fleet(self, t0: float) -> None:
        """Create the clients, their time 0 being loop time `t0`."""
        service = self.service()
        self.clients = [LabClient(spec, service, self.recorder, t0) for spec in self.specs]
        self._tasks = [asyncio.create_task(client.run()) for client in self.clients]

    async def step(self, index: int, now: float, session: aiohttp.ClientSession) -> None:
        """Carry out weight step `index` (of scenario.weights) at `now` (fleet time)."""
        before, after = self.scenario.weights[index - 1], self.scenario.weights[index]
        self.recorder.mark(now)
        self.dns.set_weighted(
            SERVICE_NAME, _weights(after.old, after.new), self.scenario.ttl, self.rng
        )
        reload = index == 1 and self.policy.start == "step" and bool(self.policy.close)
        shares = ((before.old_share, after.old_share), (1 - before.old_share, 1 - after.old_share))

        async def operate(proxy: ProxyProcess, fell: bool) -> None:
            if reload:
                await apply_close(session, proxy, self.policy.close)
            if self.policy.epoch and fell:
                await start_epoch(session, proxy)

        await asyncio.gather(
            *(operate(p, old > new) for p, (old, new) in zip(self.proxies, shares, strict=True))
        )

    async def scrape(self, slot: int, session: aiohttp.ClientSession) -> None:
        """Scrape both proxies and account the increases to `slot`."""
        counters = await asyncio.gather(*(scrape(session, p) for p in self.proxies))
        for proxy, values in zip(self.proxies, counters, strict=True):
            self.series.add(proxy.vip, slot, values)

    async def stop_fleet(self, now: float) -> None:
        """Mark the end and stop the clients (their request in flight may finish)."""
        self.recorder.mark(now)
        for client in self.clients:
            client.stopping = True
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=STOP_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._tasks = []

    async def stop(self) -> None:
        """Stop everything this run started; safe at any stage, and more than once."""
        try:
            if self._tasks:
                await self.stop_fleet(self.scenario.duration)
        finally:
            try:
                await asyncio.gather(*(stop_proxy(proxy) for proxy in self.proxies))
            finally:
                for backend in self.backends:
                    await backend.stop()
                await self.dns.stop()
                self._tmp.cleanup()

    def result(self) -> RunResult:
        return RunResult(self.policy, self.recorder, self.series)


def _weights(old: float, new: float) -> dict[str, float]:
    return {OLD_VIP: old, NEW_VIP: new}


Progress = Callable[[int, Sequence[PolicyRun]], None]


async def _timeline(
    runs: Sequence[PolicyRun], scenario: Scenario, session: aiohttp.ClientSession, show: Progress
) -> None:
    """Start the fleets, carry out the steps, scrape and show progress every second, stop."""
    loop = asyncio.get_running_loop()
    t0 = loop.time() + START_DELAY
    for run in runs:
        run.start_fleet(t0)
    events = [(step.at, 0, i) for i, step in enumerate(scenario.weights) if i > 0]
    events += [(float(second), 1, second) for second in range(1, int(scenario.duration) + 1)]
    for at, kind, number in sorted(events):
        await asyncio.sleep(max(0.0, t0 + at - loop.time()))
        if kind == 0:
            await asyncio.gather(*(run.step(number, at, session) for run in runs))
            continue
        try:
            async with asyncio.timeout(TICK_TIMEOUT):
                await asyncio.gather(*(run.scrape(number - 1, session) for run in runs))
        except TimeoutError:
            pass  # a late scrape: the next one counts its increase
        show(number - 1, runs)
    await asyncio.gather(*(run.stop_fleet(loop.time() - t0) for run in runs))
    await asyncio.gather(*(run.scrape(run.recorder.slots - 1, session) for run in runs))


async def run_group(
    scenario: Scenario, policies: Sequence[Policy], specs: Sequence[ClientSpec], show: Progress
) -> list[RunResult]:
    """Run `policies` at once on one clock; everything started is stopped before returning."""
    runs = [PolicyRun(scenario, p, scenario.policies.index(p), specs) for p in policies]
    async with aiohttp.ClientSession() as session:
        try:
            try:
                async with asyncio.TaskGroup() as group:
                    for run in runs:
                        group.create_task(run.start(session))
            except* LabError as errors:
                raise errors.exceptions[0] from None
            await _timeline(runs, scenario, session, show)
        finally:
            await asyncio.gather(*(run.stop() for run in runs), return_exceptions=True)
    return [run.result() for run in runs]


async def run_scenario(
    scenario: Scenario, specs: Sequence[ClientSpec], show: Progress, announce: Callable[[str], None]
) -> list[RunResult]:
    """Every policy of `scenario`, at once or in turn; results in the scenario's order."""
    if scenario.concurrent:
        return await run_group(scenario, scenario.policies, specs, show)
    results = []
    for policy in scenario.policies:
        announce(policy.name)
        results += await run_group(scenario, [policy], specs, show)
    return results
