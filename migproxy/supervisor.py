# The supervisor of `[server] workers = N` (N > 1): N worker processes share the listening
# address (SO_REUSEPORT, the kernel spreads connections over them), each a whole proxy with its
# own event loop; this process starts them, restarts one that dies, passes signals and admin
# requests on to all of them, and serves the admin endpoint for the whole proxy.
#
# Rules:
# - Workers are `python -m migproxy worker`: they start from the config in force, kept in the
#   run directory (the content this process checked, then each config the workers apply),
#   watch the config file for changes themselves, and serve an internal admin endpoint on a
#   loopback port they choose and write to the run directory. The supervisor reaches them
#   only through signals and those endpoints, so a worker is exactly the single-process
#   proxy, tested as such.
# - Metrics use prometheus-client's multiprocess mode: every worker writes its series to
#   files in one directory, and the supervisor's /metrics adds them up. A dead worker's
#   files are marked dead (its gauges drop out; its counters keep counting).
# - SIGHUP is passed on (each worker reloads); SIGTERM/SIGINT start a drain in every worker,
#   and the supervisor exits when all have; a second signal is passed on too (exit at once).
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from migproxy.admin import config_response, json_response, token_refusal
from migproxy.config import Config, ConfigError, load_config
from migproxy.control import CONFIG_IN_FORCE, restart_needed
from migproxy.lifecycle import check_address_free

log = logging.getLogger("migproxy")

# Seconds before a dead worker is started again: 1 s, doubling while it keeps dying within a
# minute of its start (a crash loop), at most 30 s.
RESTART_DELAY = 1.0
RESTART_DELAY_MAX = 30.0
STABLE_SECONDS = 60.0
WORKER_START_TIMEOUT = 30.0
FORWARD_TIMEOUT = 10.0


@dataclasses.dataclass
class Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    admin_port: int = 0
    restarts: int = 0
    started_at: float = 0.0
    delay: float = RESTART_DELAY  # before the next restart
    ready: bool = False  # it wrote its admin port: its signal handlers are in place
    reload_pending: bool = False  # a SIGHUP came while it was starting


class Supervisor:
    """Runs the workers of one proxy."""

    def __init__(self, config: Config, config_path: str, no_uvloop: bool, content: bytes) -> None:
        self.config = config
        self.config_path = config_path
        self.content = content  # of the config file, as `config` was loaded from it
        self.no_uvloop = no_uvloop
        self.run_dir = Path(tempfile.mkdtemp(prefix="migproxy-"))
        self.metrics_dir = self.run_dir / "metrics"
        self.metrics_dir.mkdir()
        self.workers = [Worker(i) for i in range(config.server.workers)]
        self.stopping = False
        self._signals = 0

    async def run(self) -> int:
        """Start the workers and supervise them until a signal drains them; the exit code."""
        loop = asyncio.get_running_loop()
        address = self.config.listen.address
        admin = None
        try:
            check_address_free(address.host, address.port)  # fail here, not in every worker
            # The workers start from this very content (see control.config_in_force), not
            # from a read of the file of their own, which may come after an edit.
            (self.run_dir / CONFIG_IN_FORCE).write_bytes(self.content)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_stop_signal, sig)
            loop.add_signal_handler(signal.SIGHUP, self._forward, signal.SIGHUP)
            await asyncio.gather(*(self._start(worker) for worker in self.workers))
            admin = await self._start_admin()
            log.info(
                "supervisor: %d workers on %s (pids %s)",
                len(self.workers),
                address,
                ", ".join(str(w.process.pid) for w in self.workers if w.process),
            )
            await asyncio.gather(*(self._watch(worker) for worker in self.workers))
        finally:
            if admin is not None:
                await admin.cleanup()
            for worker in self.workers:
                if worker.process is not None and worker.process.returncode is None:
                    worker.process.kill()
                    await worker.process.wait()
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return 0

    # Workers

    async def _start(self, worker: Worker) -> None:
        port_file = self.run_dir / f"worker-{worker.index}.port"
        port_file.unlink(missing_ok=True)
        command = [sys.executable, "-m", "migproxy", "worker", "--config", self.config_path]
        command += ["--run-dir", str(self.run_dir), "--index", str(worker.index)]
        if self.no_uvloop:
            command.append("--no-uvloop")
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)}
        worker.ready = False
        worker.process = await asyncio.create_subprocess_exec(*command, env=env)
        worker.started_at = time.monotonic()
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while not port_file.exists():
            if worker.process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {worker.index} did not start")
            await asyncio.sleep(0.05)
        worker.admin_port = int(port_file.read_text())
        worker.ready = True
        if self.stopping:  # the stop signal came while it started: it drains too
            worker.process.send_signal(signal.SIGTERM)
        elif worker.reload_pending:  # the file may have changed after it read it
            worker.reload_pending = False
            worker.process.send_signal(signal.SIGHUP)

    async def _watch(self, worker: Worker) -> None:
        """Wait for the worker to exit; start it again unless the proxy is stopping."""
        while True:
            assert worker.process is not None
            code = await worker.process.wait()
            self._forget_metrics_of(worker.process.pid)
            if self.stopping:
                return
            worker.restarts += 1
            log.error(
                "worker %d (pid %d) exited with %d; starting it again",
                worker.index,
                worker.process.pid,
                code,
            )
            if time.monotonic() - worker.started_at > STABLE_SECONDS:
                worker.delay = RESTART_DELAY
            await asyncio.sleep(worker.delay)
            if self.stopping:  # the proxy began to stop during the back-off
                return
            worker.delay = min(worker.delay * 2, RESTART_DELAY_MAX)
            try:
                await self._start(worker)
            except (OSError, RuntimeError) as err:
                log.error("worker %d: %s", worker.index, err)

    def _forget_metrics_of(self, pid: int) -> None:
        """Drop a dead worker's gauges: prometheus-client's mark_process_dead() removes only the
        live* ones, and a dead worker's `max` gauges (the ratio, the epoch, all_down...) would
        stay in /metrics for ever. Its counters stay: totals must not go down."""
        mark_process_dead(pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
        for path in self.metrics_dir.glob(f"gauge_*_{pid}.db"):
            path.unlink(missing_ok=True)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        self.stopping = True
        if self._signals == 1:
            log.info("supervisor: draining %d workers", len(self.workers))
        self._forward(sig)

    def _forward(self, sig: signal.Signals) -> None:
        for worker in self.workers:
            if worker.process is None or worker.process.returncode is not None:
                continue
            if worker.ready:
                worker.process.send_signal(sig)
            elif sig == signal.SIGHUP:
                worker.reload_pending = True  # delivered by _start() once it is up
            # A stop signal for a worker still starting is delivered by _start() too: one
            # sent now could reach it before its handler, or be its second (exit at once).

    # Admin endpoint of the whole proxy

    async def _start_admin(self) -> web.AppRunner | None:
        address = self.config.admin.address
        if address is None:
            return None
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/workers", self._workers)
        app.router.add_get("/config", self._config)
        for path in ("/upstreams", "/migration"):
            app.router.add_get(path, self._from_first_worker)
        app.router.add_post("/reload", self._reload)
        app.router.add_post("/migration/epoch", self._epoch)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, address.host, address.port).start()
        return runner

    async def _metrics(self, request: web.Request) -> web.Response:
        await self._each("POST", "/flush")  # every worker's counts, up to this moment
        registry = CollectorRegistry()
        MultiProcessCollector(registry, str(self.metrics_dir))  # type: ignore[no-untyped-call]
        body = await asyncio.to_thread(generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _config(self, request: web.Request) -> web.Response:
        """The configuration in force, as worker 0 has it (reloads reach the workers, by
        SIGHUP or by their own watch of the file, not this process), with this endpoint's
        admin address instead of the worker's internal one."""
        status, text = (await self._each("GET", "/config", first_only=True))[0]
        if status != 200:
            return config_response(self.config)
        data = json.loads(text)
        address = self.config.admin.address
        data["admin"]["address"] = None if address is None else dataclasses.asdict(address)
        return json_response(data)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        """Ready when every worker is."""
        if self.stopping:
            return web.Response(status=503, text="draining\n")
        answers = await self._each("GET", "/readyz")
        for index, (status, text) in enumerate(answers):
            if status != 200:
                return web.Response(status=503, text=f"worker {index}: {text.strip()}\n")
        return web.Response(text="ready\n")

    async def _workers(self, request: web.Request) -> web.Response:
        data = [
            {
                "index": w.index,
                "pid": w.process.pid if w.process else None,
                "alive": w.process is not None and w.process.returncode is None,
                "restarts": w.restarts,
            }
            for w in self.workers
        ]
        return json_response(data)

    async def _from_first_worker(self, request: web.Request) -> web.Response:
        status, text = (await self._each("GET", request.path, first_only=True))[0]
        return web.Response(status=status, text=text, content_type="application/json")

    async def _reload(self, request: web.Request) -> web.Response:
        """Check the file here, then have every worker reload it."""
        refused = self._refused(request)
        if refused is not None:
            return refused
        try:
            new = load_config(self.config_path)
            key = restart_needed(self.config, new)
            if key is not None:
                raise ConfigError(
                    self.config_path,
                    key,
                    "changed; a restart is needed to apply it (nothing changed)",
                )
        except ConfigError as err:
            log.error("reload (POST /reload) refused: %s", err)
            return json_response({"reloaded": False, "message": str(err)}, 400)
        answers = await self._each("POST", "/reload", headers=_auth(request))
        failed = [text for status, text in answers if status != 200]
        status = 200 if not failed else 502
        return json_response(
            {"reloaded": not failed, "workers": [_json_or_text(t) for _, t in answers]}, status
        )

    async def _epoch(self, request: web.Request) -> web.Response:
        """One epoch for every worker: "now" is fixed here, once."""
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = _with_fixed_now(await request.read(), time.time())
        answers = await self._each("POST", "/migration/epoch", data=body, headers=_auth(request))
        applied = [text for status, text in answers if status == 200]
        if applied:
            # A worker that did not answer (one being started again, say) takes the epoch
            # from the run directory's epoch file, where the others wrote it: a retry would
            # only start a second epoch.
            return web.Response(text=applied[0], content_type="application/json")
        status = max(status for status, _ in answers)
        return web.Response(status=status, text=answers[0][1], content_type="application/json")

    def _refused(self, request: web.Request) -> web.Response | None:
        return token_refusal(self.config.admin.token, request)

    async def _each(
        self,
        method: str,
        path: str,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        first_only: bool = False,
    ) -> list[tuple[int, str]]:
        """Send one request to every worker's internal admin endpoint: (status, body) each."""
        workers = self.workers[:1] if first_only else self.workers
        timeout = aiohttp.ClientTimeout(total=FORWARD_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def one(worker: Worker) -> tuple[int, str]:
                url = f"http://127.0.0.1:{worker.admin_port}{path}"
                try:
                    async with session.request(method, url, data=data, headers=headers) as resp:
                        return resp.status, await resp.text()
                except (aiohttp.ClientError, TimeoutError) as err:
                    return 503, json.dumps({"error": f"worker {worker.index}: {err}"})

            return list(await asyncio.gather(*(one(w) for w in workers)))


def _with_fixed_now(body: bytes, now: float) -> bytes:
    """A POST /migration/epoch body for the workers: "now" (said or meant, by an empty body or
    an object without "epoch") becomes one time for all of them. Anything else goes as it is,
    for the workers to judge."""
    if not body.strip():
        return json.dumps({"epoch": _rfc3339(now)}).encode()
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict) and data.get("epoch", "now") == "now":
        return json.dumps({**data, "epoch": _rfc3339(now)}).encode()
    return body


def _json_or_text(text: str) -> object:
    """A worker's JSON answer, or its text if it is not JSON (a 500 of aiohttp's, say)."""
    try:
        return json.loads(text)
    except ValueError:
        return {"error": text.strip()}


def _auth(request: web.Request) -> dict[str, str]:
    value = request.headers.get("Authorization")
    return {"Authorization": value} if value else {}


def _rfc3339(unix: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(unix)) + f".{int(unix % 1 * 1e6):06d}Z"
