# Server lifecycle of one worker: resolve the upstream, bind the listener, run the timeout
# sweep, reload on SIGHUP or a change of the config file, and shut down gracefully on
# SIGTERM/SIGINT (a second signal exits at once).
from __future__ import annotations

import asyncio
import dataclasses
import errno
import functools
import gc
import logging
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, disable_created_metrics
from prometheus_client.multiprocess import MultiProcessCollector

from migproxy.admin import start_admin
from migproxy.config import Address, Config
from migproxy.control import Reloader, SharedEpoch, keep_in_force, write_atomically
from migproxy.http1 import parse
from migproxy.metrics import Metrics, build_metrics
from migproxy.migration import EpochWatcher
from migproxy.proxy import ProxyContext
from migproxy.server.client_protocol import ClientProtocol
from migproxy.sockopts import apply_tcp_keepalive

log = logging.getLogger("migproxy")
PARENT_CHECK_INTERVAL = 1.0  # seconds between a worker's checks that its supervisor lives


async def bind_listeners(
    config: Config,
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], asyncio.BaseProtocol],
    shared: bool = False,
) -> list[asyncio.Server]:
    """The listening sockets of this worker: `listen.accept_queues` of them on one address.

    uvloop accepts one connection per listening socket per event-loop iteration, so under a
    wave of reconnects (which injected closes cause) one socket lets new connections queue
    for many iterations. Several sockets sharing the address through SO_REUSEPORT, with the
    kernel spreading connections over them, accept that many per iteration.

    `shared`: this is one worker of several, which share the address (the supervisor checked
    that it was free before starting them).

    Raises:
        OSError: the address is taken, by any process, or cannot be bound.
    """
    listen = config.listen
    queues = listen.accept_queues
    if queues > 1 and not shared:
        # SO_REUSEPORT would let us bind beside a running instance of ourselves; refuse, as
        # a plain bind would.
        check_address_free(listen.address.host, listen.address.port)
    servers = [
        await loop.create_server(
            factory,
            listen.address.host,
            listen.address.port,
            backlog=listen.backlog,
            reuse_address=True,
            reuse_port=queues > 1 or shared,
        )
        for _ in range(queues)
    ]
    for server in servers:
        for sock in server.sockets:
            # Accepted sockets inherit the keep-alive options of their listening socket.
            apply_tcp_keepalive(sock, listen.tcp_keepalive)
    return servers


async def _drain_without_supervisor(supervisor: int, stop: asyncio.Event) -> None:
    """A worker whose supervisor died (SIGKILL, a crash) is re-parented: it drains and exits
    rather than hold the address that a new supervisor will want."""
    while os.getppid() == supervisor:
        await asyncio.sleep(PARENT_CHECK_INTERVAL)
    log.warning("the supervisor (pid %d) is gone: draining", supervisor)
    stop.set()


def check_address_free(host: str, port: int) -> None:
    """Raise OSError if host:port cannot be bound (taken by any process)."""
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(sockaddr)


def metrics_for_this_process(config: Config) -> tuple[CollectorRegistry, Metrics]:
    """The registry /metrics exposes, and this process's metrics.

    With PROMETHEUS_MULTIPROC_DIR set (worker processes, prometheus-client multiprocess mode),
    the metrics write to files there and the registry aggregates every process's files;
    otherwise both live in this process.
    """
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        metrics = build_metrics(None, config.metrics.vip)
    else:
        metrics = build_metrics(registry, config.metrics.vip)
    metrics.last_reload_success.set_to_current_time()  # the start-up load counts as one
    return registry, metrics


def as_worker(config: Config) -> Config:
    """The config of a worker process: its admin endpoint, for the supervisor only, is on a
    loopback port of its own choosing."""
    admin = dataclasses.replace(config.admin, address=Address("127.0.0.1", 0))
    return dataclasses.replace(config, admin=admin)


async def serve(
    config: Config,
    ready: Callable[[ProxyContext], None] | None = None,
    config_path: str | None = None,
    worker: tuple[int, Path] | None = None,
    config_content: bytes | None = None,
) -> None:
    """Run the proxy until SIGTERM/SIGINT, then drain and return.

    With `config_path`, SIGHUP, a change of that file and POST /reload reload it
    (`config_content`: the content `config` was loaded from, if not the file's now). With
    `worker` (its index and the run directory), this is a worker under a supervisor
    (migproxy/supervisor.py): it shares the listening address, writes its admin port to
    worker-INDEX.port in the run directory once it serves, shares its epochs with the other
    workers through the run directory (SharedEpoch), and samples the watched DNS name for all
    of them if it is worker 0.
    """
    as_loaded = config
    if worker is not None:
        config = as_worker(config)
    loop = asyncio.get_running_loop()
    # Stop signals are handled before anything listens: one that comes while the proxy
    # starts drains it once it has started, rather than kill it with its connections.
    stop = asyncio.Event()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            log.warning("second signal: exiting now")
            raise SystemExit(1)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    registry, metrics = metrics_for_this_process(config)
    ctx = ProxyContext(config, loop, metrics=metrics)
    await ctx.upstreams.start()
    listen = config.listen.address
    servers = await bind_listeners(
        config, loop, lambda: ClientProtocol(ctx), shared=worker is not None
    )
    ctx.serving = True
    tasks = [loop.create_task(_sweep_forever(ctx))]
    watcher = None
    if worker is None:
        watcher = EpochWatcher(ctx)  # idles while [migration] watch_name is ""
    else:
        shared = SharedEpoch(worker[1] / "epoch.json", ctx)
        shared.attach()  # no await since the bind: it is in force before a request is read
        tasks.append(loop.create_task(shared.follow()))
        if worker[0] == 0:
            watcher = EpochWatcher(ctx)
        else:
            ctx.stats.samples_dns = False  # worker 0 samples, and reports the share
    if watcher is not None:
        watcher.start()
    reloader = None
    if config_path is not None:
        reloader = Reloader(
            config_path,
            ctx,
            loaded=config_content,
            in_force=as_loaded,
            adjust=None if worker is None else as_worker,
            applied=None if worker is None else functools.partial(keep_in_force, worker[1]),
        )
    admin = await start_admin(ctx, registry, reloader)
    if admin is not None:
        host, port = admin.addresses[0][:2]
        log.info("admin endpoint on http://%s/", Address(host, port))
    log.info(
        "listening on %s, forwarding to %s (%s), close.ratio=%s",
        listen,
        config.upstream.address,
        ", ".join(b.label for b in ctx.upstreams.balancer.backends.values()),
        config.close.ratio,
    )
    if not parse.ACCELERATED and (worker is None or worker[0] == 0):
        log.warning(
            "running the pure-Python head parser%s: about a third more CPU per request; "
            "reinstall with gcc and the Python headers (python3-dev) to build the C one",
            " (MIGPROXY_PURE_PYTHON is set)" if os.environ.get("MIGPROXY_PURE_PYTHON") else "",
        )
    if worker is not None:
        tasks.append(loop.create_task(_drain_without_supervisor(os.getppid(), stop)))
    if reloader is not None:
        loop.add_signal_handler(signal.SIGHUP, reloader.reload, "SIGHUP")
        tasks.append(loop.create_task(reloader.watch()))
    if worker is not None and admin is not None:
        # The supervisor's sign that this worker is up, written once signals are handled:
        # from now on SIGHUP reloads and SIGTERM drains (before, SIGHUP was ignored).
        port = admin.addresses[0][1]
        write_atomically(worker[1] / f"worker-{worker[0]}.port", str(port).encode())
    tune_gc()
    if ready is not None:
        ready(ctx)
    try:
        await stop.wait()
        await _drain(ctx, servers)
    finally:
        for task in tasks:
            task.cancel()
        for server in servers:
            server.close()
        if admin is not None:
            await admin.cleanup()
        if watcher is not None:
            await watcher.stop()
        await ctx.upstreams.stop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


def tune_gc() -> None:
    """Keep the cyclic garbage collector off the data path.

    Every exchange allocates a few short-lived containers (heads, events) that reference
    counting frees at once; with the default thresholds the collector still runs every 700
    allocations and, now and then, walks every live object, which shows as latency spikes.
    What exists after start-up is moved out of its reach (gc.freeze) and collections are made
    rarer; cycles are still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)


async def _sweep_forever(ctx: ProxyContext) -> None:
    while True:
        await asyncio.sleep(ctx.sweep_every)  # read each time: a reload may shorten it
        ctx.sweep()


def _dup_listeners(servers: list[asyncio.Server]) -> list[socket.socket]:
    """Duplicates of the servers' listening sockets, to take their accept queues from once
    the servers are closed (see _accept_queued); a socket that cannot be duplicated (no
    descriptor left) is skipped: its queue is lost, the drain goes on."""
    held = []
    for server in servers:
        for sock in server.sockets:
            try:
                held.append(socket.socket(fileno=os.dup(sock.fileno())))
            except OSError as err:
                log.warning("drain: cannot keep an accept queue: %s", err.strerror or err)
    return held


# accept(2) errors that concern one connection, not the listening socket (see its man page).
_ACCEPT_ONE_FAILED = frozenset(
    (errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ENETDOWN, errno.EHOSTUNREACH)
)


async def _accept_queued(ctx: ProxyContext, listeners: list[socket.socket]) -> int:
    """Accept the connections waiting in the accept queues of `listeners` (duplicates of the
    listening sockets the loop no longer accepts on), close the listeners, and serve those
    connections as the drain serves every connection; how many were taken.

    Closing a listening socket resets the connections the kernel completed but nobody
    accepted yet: clients that connected just before a drain, which injected closes make
    many, would see resets instead of an answer with `Connection: close`. The queues are
    taken in one go, without yielding to the loop: while a listener stays open, the kernel
    keeps giving it new connections.
    """
    accepted = []
    for listener in listeners:
        with listener:
            listener.setblocking(False)
            for _ in range(ctx.config.listen.backlog):  # a queue holds no more than this
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    break
                except OSError as err:
                    if err.errno in _ACCEPT_ONE_FAILED:
                        continue
                    break
                accepted.append(conn)

    async def serve_one(conn: socket.socket) -> bool:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await ctx.loop.connect_accepted_socket(lambda: ClientProtocol(ctx), conn)
        except OSError:  # the client gave up meanwhile
            conn.close()
            return False
        return True

    return sum(await asyncio.gather(*(serve_one(conn) for conn in accepted)))


async def _drain(ctx: ProxyContext, servers: list[asyncio.Server]) -> None:
    """Graceful shutdown, with the [drain] settings in force when it starts.

    /readyz fails at once; for `delay` seconds the proxy keeps serving as before, so that a
    load balancer notices and stops sending; then it stops accepting (and serves what waited
    in the accept queues), every response announces close, connections idle for
    `idle_grace` are closed, and it returns when the last connection is gone or after
    `timeout`, aborting what is left.
    """
    drain = ctx.config.drain
    ctx.stopping = True
    if drain.delay:
        log.info("draining in %s s (/readyz now fails)", drain.delay)
        await asyncio.sleep(drain.delay)
    log.info("draining %d connections", len(ctx.connections))
    queued = _dup_listeners(servers)
    for server in servers:
        server.close()
    ctx.set_draining()
    taken = await _accept_queued(ctx, queued)
    if taken:
        log.info("took %d connections from the accept queues", taken)
    deadline = ctx.loop.time() + drain.timeout
    while ctx.connections and ctx.loop.time() < deadline:
        await asyncio.sleep(0.05)
    if ctx.connections:
        log.warning("drain timeout: aborting %d connections", len(ctx.connections))
    for conn in list(ctx.connections):
        if conn.transport is not None:
            conn.transport.abort()
    log.info("drained")
