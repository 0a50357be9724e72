# The lab's proxies: one real `migproxy run` process per VIP, with a real config file in the
# run's temporary directory and a real admin endpoint, which the lab uses as an operator would
# (POST /reload after rewriting the file, POST /migration/epoch, GET /metrics).
#
# Rules:
# - Each proxy runs in its own session (process group): Ctrl-C in the terminal reaches only
#   the lab, which then stops the proxies itself, in order (SIGTERM, a bounded wait, SIGKILL
#   to the whole group). LIVE_GROUPS holds every group not yet reaped, so that even an
#   interrupted clean-up can kill what is left (kill_leftovers) before the lab exits.
# - Should the lab itself be killed outright (SIGKILL), the kernel sends each proxy SIGTERM
#   (Linux's PR_SET_PDEATHSIG), so no proxy outlives it for long.
# - A proxy that does not start is a LabError quoting the end of its log.
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from migproxy.lab.ports import LOCAL, LabError, free_port
from migproxy.lab.record import COUNTERS, HELD_BUDGET, HELD_RETURNING

START_TIMEOUT = 20.0  # seconds for a proxy to listen (several start at once on 2 CPUs)
STOP_TIMEOUT = 8.0  # seconds of graceful drain before SIGKILL
ADMIN_TIMEOUT = aiohttp.ClientTimeout(total=5.0)
LOG_TAIL = 1500  # characters of a failed proxy's log quoted in the error
LIVE_GROUPS: set[int] = set()


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _terminate_with_parent() -> None:
    """In the child, before exec: SIGTERM when the lab dies (Linux; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def render_toml(sections: Mapping[str, Mapping[str, object]]) -> str:
    """TOML text for flat tables of strings, numbers and booleans."""

    def value(item: object) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, str):
            return '"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(item, list):
            return "[" + ", ".join(value(element) for element in item) + "]"
        return repr(item)

    lines = []
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {value(item)}" for key, item in keys.items()]
    return "\n".join(lines) + "\n"


@dataclass
class ProxyProcess:
    """A running `migproxy run` in front of one VIP."""

    vip: str  # "old" or "new": also its [metrics] vip label
    address: str
    port: int
    upstream_port: int
    admin_port: int
    seed: int
    directory: Path
    process: asyncio.subprocess.Process | None = None
    close: Mapping[str, object] = field(default_factory=dict)  # [close] keys in force

    @property
    def admin_url(self) -> str:
        return f"http://{LOCAL}:{self.admin_port}"

    @property
    def config_path(self) -> Path:
        return self.directory / f"migproxy-{self.vip}.toml"

    @property
    def log_path(self) -> Path:
        return self.directory / f"migproxy-{self.vip}.log"

    def config_text(self) -> str:
        return render_toml(
            {
                "listen": {"address": f"{self.address}:{self.port}", "accept_queues": 1},
                "upstream": {"address": f"{LOCAL}:{self.upstream_port}"},
                "admin": {"address": f"{LOCAL}:{self.admin_port}"},
                "metrics": {"vip": self.vip},
                "log": {"level": "warning"},
                "close": {"seed": self.seed, **self.close},
                "drain": {"idle_grace": 0.2, "timeout": STOP_TIMEOUT - 2},
            }
        )

    def log_tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return text[-LOG_TAIL:].strip() or "(empty log)"


async def start_proxy(proxy: ProxyProcess) -> None:
    """Write the proxy's config and start it; return once it listens on both ports.

    Raises:
        LabError: it exited or did not listen within START_TIMEOUT.
    """
    proxy.admin_port = proxy.admin_port or free_port()
    proxy.config_path.write_text(proxy.config_text())
    with proxy.log_path.open("wb") as log:
        proxy.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "migproxy",
            "run",
            "--config",
            str(proxy.config_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_terminate_with_parent,  # the lab starts no threads: safe before exec
        )
    LIVE_GROUPS.add(proxy.process.pid)
    try:
        async with asyncio.timeout(START_TIMEOUT):
            for host, port in ((proxy.address, proxy.port), (LOCAL, proxy.admin_port)):
                await _wait_listening(proxy, host, port)
    except TimeoutError:
        raise LabError(
            f"the {proxy.vip} VIP's proxy did not listen within {START_TIMEOUT:g} s; its log:\n"
            + proxy.log_tail()
        ) from None


async def _wait_listening(proxy: ProxyProcess, host: str, port: int) -> None:
    assert proxy.process is not None
    while True:
        if proxy.process.returncode is not None:
            raise LabError(
                f"the {proxy.vip} VIP's proxy exited ({proxy.process.returncode}) at start; "
                f"its log:\n{proxy.log_tail()}"
            )
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return
        await asyncio.sleep(0.05)


async def stop_proxy(proxy: ProxyProcess) -> None:
    """SIGTERM (a graceful drain), then SIGKILL to its process group if it takes too long."""
    process = proxy.process
    if process is None:
        return
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    # Its group may outlive it (a worker it started): kill what is left of it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    LIVE_GROUPS.discard(process.pid)


def kill_leftovers() -> None:
    """SIGKILL every proxy process group not reaped yet (the last resort of an interrupted
    clean-up); synchronous, for a `finally` outside the event loop."""
    for group in list(LIVE_GROUPS):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
        LIVE_GROUPS.discard(group)


async def _admin(session: aiohttp.ClientSession, proxy: ProxyProcess, path: str) -> str:
    url = proxy.admin_url + path
    try:
        async with session.post(url, timeout=ADMIN_TIMEOUT) as response:
            text = await response.text()
            if response.status != 200:
                raise LabError(f"POST {url}: {response.status} {text.strip()}")
            return text
    except (aiohttp.ClientError, TimeoutError) as err:
        raise LabError(f"POST {url}: {err or type(err).__name__}") from None


async def apply_close(
    session: aiohttp.ClientSession, proxy: ProxyProcess, close: Mapping[str, object]
) -> None:
    """Put `close` keys in force: rewrite the config file and POST /reload (the proxy would
    also notice the file within a second; the POST makes it now and reports errors)."""
    proxy.close = close
    proxy.config_path.write_text(proxy.config_text())
    await _admin(session, proxy, "/reload")


async def start_epoch(session: aiohttp.ClientSession, proxy: ProxyProcess) -> None:
    """POST /migration/epoch: connections opened before now are stale."""
    await _admin(session, proxy, "/migration/epoch")


def parse_counters(text: str) -> dict[str, float]:
    """The COUNTERS of one /metrics exposition, each summed over its labels, and the deferred
    closes by cause (HELD_RETURNING, HELD_BUDGET)."""
    totals = dict.fromkeys((*COUNTERS, HELD_RETURNING, HELD_BUDGET), 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
            by_cause = f"{sample.name}:{sample.labels.get('cause', '')}"
            if by_cause in totals:
                totals[by_cause] += sample.value
    return totals


async def scrape(session: aiohttp.ClientSession, proxy: ProxyProcess) -> dict[str, float] | None:
    """The proxy's counters now, or None if the scrape failed (it is retried next second)."""
    try:
        async with session.get(proxy.admin_url + "/metrics", timeout=ADMIN_TIMEOUT) as response:
            if response.status != 200:
                return None
            return parse_counters(await response.text())
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
