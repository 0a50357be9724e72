"""Side-by-side throughput/CPU benchmark: nginx direct vs HAProxy 2.6 vs migproxy.

All three targets serve the same nginx backend, started by this script:

* ``direct``   -- wrk talks to the nginx backend itself (baseline).
* ``haproxy``  -- HAProxy in HTTP mode, ``nbthread 1``, ``http-reuse always``, keep-alive on both
  sides, ``Connection: close`` injected into 10% of responses via
  ``http-after-response set-header Connection close if { rand(100) lt 10 }``.
* ``migproxy`` -- ``migproxy run --config FILE`` with ``[close] ratio = 0.1``, one worker.
* ``migproxy2`` -- the same with ``[server] workers = 2``, on both CPUs (not in the default
  target list: on a two-CPU machine its second worker competes with nginx and wrk).

The proxy under test is pinned to CPU 0; nginx and wrk are pinned to CPU 1 (no pinning when the
machine has fewer than two CPUs). For each connection count every target gets a short warm-up,
then the rounds are interleaved (round 1: direct, haproxy, migproxy; round 2: same order ...).
Each run is ``wrk -t1 -cN -dDs --latency``. CPU per request is the utime+stime delta of the
proxy's process tree (from /proc) divided by the requests wrk completed.

Usage (from the repository root, as root so nginx/HAProxy may be started freely)::

    .venv/bin/python benchmarks/bench_proxy.py
    .venv/bin/python benchmarks/bench_proxy.py --duration 10 --rounds 3 --connections 50,1000 \\
        --out benchmarks/results/latest.md
    .venv/bin/python benchmarks/bench_proxy.py --duration 3 --rounds 1 --targets direct,haproxy

Options: ``--duration`` seconds per wrk run (10), ``--rounds`` (3), ``--connections`` comma list
(50,1000), ``--targets`` comma list out of direct,haproxy,migproxy,migproxy2 (default: the
first three), ``--warmup`` seconds per target and connection count (2), ``--pause``
seconds between runs (1), ``--out`` markdown file (benchmarks/results/latest.md). The
markdown table is printed to stdout and written to ``--out``. The exit status is 1 when a
target failed to start or died during the benchmark; the other targets are still measured.

Requires ``wrk``, ``nginx``, ``/usr/sbin/haproxy`` and ``taskset`` on PATH. Every process the
script starts is stopped again (SIGTERM, then SIGKILL after a timeout), also on Ctrl-C/SIGTERM,
and the temporary directory with the generated configs and logs is removed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

REPO_ROOT = Path(__file__).resolve().parent.parent
HAPROXY_BIN = "/usr/sbin/haproxy"
ALL_TARGETS = ("direct", "haproxy", "migproxy", "migproxy2")
DEFAULT_TARGETS = ("direct", "haproxy", "migproxy")
PROXY_CPU = "0"
CLIENT_CPU = "1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
WANTED_NOFILE = 65536
CLOSE_RATIO = 0.1


class BenchError(Exception):
    """A target could not be started or died; the message is meant for humans."""


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class WrkResult:
    requests: int
    rps: float
    connect_errors: int
    read_errors: int
    write_errors: int
    timeout_errors: int
    non_2xx: int
    p50_us: float
    p99_us: float

    @property
    def errors(self) -> int:
        return (
            self.connect_errors
            + self.read_errors
            + self.write_errors
            + self.timeout_errors
            + self.non_2xx
        )


@dataclass(frozen=True)
class RunResult:
    target: str
    connections: int
    round_no: int
    wrk: WrkResult
    proxy_cpu_us_per_req: float | None
    backend_cpu_us_per_req: float | None
    foreign_busy: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TargetSummary:
    target: str
    connections: int
    runs: int
    rps_median: float
    rps_min: float
    rps_max: float
    errors_total: int
    p50_median_us: float
    p99_median_us: float
    proxy_cpu_median: float | None
    backend_cpu_median: float | None


@dataclass
class ManagedProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        tail = text.strip().splitlines()[-lines:]
        return "\n".join("    " + line for line in tail) or "    (empty log)"


@dataclass
class Target:
    name: str
    port: int
    proxy: ManagedProcess | None
    failure: str | None = None


@dataclass
class Options:
    duration: int
    rounds: int
    connections: list[int]
    targets: list[str]
    warmup: int
    pause: float
    out: Path


@dataclass
class Bench:
    opts: Options
    workdir: Path
    pin: bool
    backend: ManagedProcess | None = None
    backend_port: int = 0
    targets: list[Target] = field(default_factory=list)
    results: list[RunResult] = field(default_factory=list)
    foreign: set[str] = field(default_factory=set)  # busy processes we did not start


# --------------------------------------------------------------------------- CLI


def _csv_ints(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _csv_targets(text: str) -> list[str]:
    values = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [v for v in values if v not in ALL_TARGETS]
    if not values or unknown:
        raise argparse.ArgumentTypeError(f"targets must be among {','.join(ALL_TARGETS)}")
    return [t for t in ALL_TARGETS if t in values]


def parse_args(argv: Sequence[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per target")
    p.add_argument("--connections", type=_csv_ints, default=[50, 1000], help="e.g. 50,1000")
    p.add_argument("--targets", type=_csv_targets, default=list(DEFAULT_TARGETS))
    p.add_argument("--warmup", type=int, default=2, help="warm-up seconds (0 disables)")
    p.add_argument("--pause", type=float, default=1.0, help="seconds between runs")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks/results/latest.md")
    ns = p.parse_args(argv)
    if ns.duration <= 0 or ns.rounds <= 0:
        p.error("--duration and --rounds must be positive")
    return Options(
        duration=ns.duration,
        rounds=ns.rounds,
        connections=ns.connections,
        targets=ns.targets,
        warmup=max(0, ns.warmup),
        pause=max(0.0, ns.pause),
        out=ns.out,
    )


# --------------------------------------------------------------------------- system helpers


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def raise_nofile_limit() -> int:
    """Raise RLIMIT_NOFILE as far as allowed; children inherit it. Returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for new_hard in (max(hard, WANTED_NOFILE), hard):
        target = new_hard if new_hard != resource.RLIM_INFINITY else WANTED_NOFILE
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, new_hard))
            break
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(cpu: str, argv: list[str], pin: bool) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if pin else argv


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def command_output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


# --------------------------------------------------------------------------- process lifecycle


def start_process(
    name: str, argv: list[str], workdir: Path, cwd: Path | None = None
) -> ManagedProcess:
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=cwd or workdir,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the group ourselves
        )
    return ManagedProcess(name=name, proc=proc, log_path=log_path)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_process(mp: ManagedProcess) -> None:
    """SIGTERM the process group, SIGKILL it after STOP_TIMEOUT_S, always reap the leader."""
    if mp.proc.poll() is None:
        _signal_group(mp.proc, signal.SIGTERM)
        try:
            mp.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log(f"{mp.name} did not stop within {STOP_TIMEOUT_S:.0f}s, killing it")
    _signal_group(mp.proc, signal.SIGKILL)  # stragglers (e.g. worker children) of the group
    with contextlib.suppress(subprocess.TimeoutExpired):
        mp.proc.wait(timeout=STOP_TIMEOUT_S)


def wait_until_listening(mp: ManagedProcess, port: int, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if mp.proc.poll() is not None:
            raise BenchError(
                f"{mp.name} exited with status {mp.proc.returncode} before port {port} "
                f"opened; last log lines:\n{mp.log_tail()}"
            )
        if port_open(port):
            return
        time.sleep(0.1)
    raise BenchError(
        f"{mp.name} did not open 127.0.0.1:{port} within {timeout:.0f}s; "
        f"last log lines:\n{mp.log_tail()}"
    )


def launch(
    stack: contextlib.ExitStack, name: str, argv: list[str], port: int, bench: Bench
) -> ManagedProcess:
    cwd = REPO_ROOT if name.startswith("migproxy") else None
    mp = start_process(name, argv, bench.workdir, cwd=cwd)
    stack.callback(stop_process, mp)
    wait_until_listening(mp, port)
    log(f"{name} pid {mp.proc.pid} listening on 127.0.0.1:{port}")
    return mp


# --------------------------------------------------------------------------- configs


def nginx_config(workdir: Path, port: int, nofile: int) -> str:
    (workdir / "www").mkdir(exist_ok=True)
    (workdir / "www" / "static.txt").write_text("hello from nginx static\n")
    conns = max(1024, min(16384, nofile - 256))
    return f"""daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections {conns}; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/client_body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    keepalive_requests 100000;
    keepalive_timeout 75s;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ return 200 "hello from nginx\\n"; }}
        location /static/ {{ alias {workdir}/www/; }}
    }}
}}
"""


def haproxy_config(port: int, backend_port: int, maxconn: int) -> str:
    pct = round(CLOSE_RATIO * 100)
    return f"""global
    nbthread 1
    maxconn {maxconn}

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 75s
    timeout queue 10s

frontend fe
    bind 127.0.0.1:{port}
    maxconn {maxconn}
    http-after-response set-header Connection close if {{ rand(100) lt {pct} }}
    default_backend be

backend be
    server nginx 127.0.0.1:{backend_port}
"""


def migproxy_config(port: int, backend_port: int, workers: int) -> str:
    # wrk's connections all come from 127.0.0.1: the returning-client back-off would take them
    # for one client and hold its closes back, so it is off to close as many as HAProxy does.
    return f"""[listen]
address = "127.0.0.1:{port}"

[upstream]
address = "127.0.0.1:{backend_port}"

[close]
ratio = {CLOSE_RATIO}
seed = 1
returning_window = 0

[admin]
address = ""

[server]
workers = {workers}
"""


def migproxy_command(config: Path) -> list[str]:
    script = REPO_ROOT / ".venv" / "bin" / "migproxy"
    if script.exists():
        return [str(script), "run", "--config", str(config)]
    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    python = str(venv_python) if venv_python.exists() else sys.executable
    return [python, "-m", "migproxy", "run", "--config", str(config)]


# --------------------------------------------------------------------------- starting targets


def start_backend(stack: contextlib.ExitStack, bench: Bench, nofile: int) -> None:
    port = free_port()
    conf = bench.workdir / "nginx.conf"
    conf.write_text(nginx_config(bench.workdir, port, nofile))
    argv = ["nginx", "-p", str(bench.workdir), "-c", str(conf)]
    argv += ["-e", str(bench.workdir / "nginx-error.log")]
    bench.backend = launch(stack, "nginx", pinned(CLIENT_CPU, argv, bench.pin), port, bench)
    bench.backend_port = port


def start_haproxy(stack: contextlib.ExitStack, bench: Bench, nofile: int) -> Target:
    port = free_port()
    maxconn = max(2048, min(50000, (nofile - 200) // 2))
    conf = bench.workdir / "haproxy.cfg"
    conf.write_text(haproxy_config(port, bench.backend_port, maxconn))
    argv = [HAPROXY_BIN, "-db", "-f", str(conf)]
    mp = launch(stack, "haproxy", pinned(PROXY_CPU, argv, bench.pin), port, bench)
    return Target(name="haproxy", port=port, proxy=mp)


def start_migproxy(stack: contextlib.ExitStack, bench: Bench, name: str) -> Target:
    """`migproxy`: one worker on the proxy CPU; `migproxy2`: two workers on both CPUs (on a
    two-CPU machine the second shares its CPU with nginx and wrk)."""
    workers = 2 if name == "migproxy2" else 1
    port = free_port()
    conf = bench.workdir / f"{name}.toml"
    conf.write_text(migproxy_config(port, bench.backend_port, workers))
    cpus = PROXY_CPU if workers == 1 else f"{PROXY_CPU},{CLIENT_CPU}"
    argv = pinned(cpus, migproxy_command(conf), bench.pin)
    mp = launch(stack, name, argv, port, bench)
    return Target(name=name, port=port, proxy=mp)


def start_target(stack: contextlib.ExitStack, bench: Bench, name: str, nofile: int) -> Target:
    try:
        if name == "direct":
            return Target(name="direct", port=bench.backend_port, proxy=None)
        if name == "haproxy":
            return start_haproxy(stack, bench, nofile)
        return start_migproxy(stack, bench, name)
    except (BenchError, OSError) as exc:
        log(f"ERROR: target {name} failed to start: {exc}")
        return Target(name=name, port=0, proxy=None, failure=f"failed to start: {exc}")


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class ProcInfo:
    comm: str
    ppid: int
    ticks: int  # utime + stime + cutime + cstime


def _proc_info(pid: int) -> ProcInfo | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None  # gone meanwhile
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is stat field 3 (state): ppid=4, utime=14, stime=15, cutime=16, cstime=17
    return ProcInfo(comm=comm, ppid=int(fields[1]), ticks=sum(int(v) for v in fields[11:15]))


def proc_table() -> dict[int, ProcInfo]:
    table: dict[int, ProcInfo] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := _proc_info(int(entry))) is not None:
            table[int(entry)] = info
    return table


def descendants(table: dict[int, ProcInfo], root: int) -> set[int]:
    """root and all its live descendants (empty if root is gone)."""
    wanted, frontier = ({root}, [root]) if root in table else (set(), [])
    while frontier:
        parent = frontier.pop()
        for pid, info in table.items():
            if info.ppid == parent and pid not in wanted:
                wanted.add(pid)
                frontier.append(pid)
    return wanted


def tree_ticks(table: dict[int, ProcInfo], root: int) -> int:
    """CPU ticks of root and its live descendants (reaped children count via cutime/cstime)."""
    return sum(table[pid].ticks for pid in descendants(table, root))


def foreign_busy(before: dict[int, ProcInfo], after: dict[int, ProcInfo], seconds: int) -> set[str]:
    """Processes this script did not start that used > 5% of a CPU during the run."""
    ours = descendants(after, os.getpid())
    limit = 0.05 * seconds * os.sysconf("SC_CLK_TCK")
    busy: set[str] = set()
    for pid, info in after.items():
        old = before.get(pid)
        kernel_thread = pid == 2 or info.ppid == 2
        if old is None or pid in ours or kernel_thread:
            continue
        if info.ticks - old.ticks > limit:
            busy.add(f"{info.comm}[{pid}]")
    return busy


_LAT_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def _latency_us(text: str, pct: str) -> float:
    m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
    return float(m.group(1)) * _LAT_UNITS[m.group(2)] if m else float("nan")


def _int_match(pattern: str, text: str, group: int = 1) -> int:
    m = re.search(pattern, text)
    return int(m.group(group)) if m else 0


def parse_wrk(text: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if rps is None:
        raise BenchError(f"could not parse wrk output:\n{text}")
    sock = r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
    return WrkResult(
        requests=_int_match(r"(\d+) requests in", text),
        rps=float(rps.group(1)),
        connect_errors=_int_match(sock, text, 1),
        read_errors=_int_match(sock, text, 2),
        write_errors=_int_match(sock, text, 3),
        timeout_errors=_int_match(sock, text, 4),
        non_2xx=_int_match(r"Non-2xx or 3xx responses: (\d+)", text),
        p50_us=_latency_us(text, "50"),
        p99_us=_latency_us(text, "99"),
    )


def run_wrk(port: int, connections: int, duration: int, pin: bool) -> WrkResult:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    argv.append(f"http://127.0.0.1:{port}/")
    done = subprocess.run(
        pinned(CLIENT_CPU, argv, pin),
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"wrk exited with {done.returncode}: {done.stderr.strip()}")
    return parse_wrk(done.stdout)


def _per_request_us(ticks: int, requests: int) -> float | None:
    if requests <= 0:
        return None
    return ticks / os.sysconf("SC_CLK_TCK") * 1e6 / requests


def _check_alive(bench: Bench, target: Target) -> None:
    for mp in (bench.backend, target.proxy):
        if mp is not None and not mp.alive():
            raise BenchError(
                f"{mp.name} died (status {mp.proc.returncode}); last log lines:\n{mp.log_tail()}"
            )


def measure(bench: Bench, target: Target, connections: int, duration: int) -> RunResult:
    if bench.backend is None:
        raise BenchError("the nginx backend is not running")
    _check_alive(bench, target)
    before = proc_table()
    wrk = run_wrk(target.port, connections, duration, bench.pin)
    after = proc_table()
    _check_alive(bench, target)
    backend_pid = bench.backend.proc.pid
    backend_ticks = tree_ticks(after, backend_pid) - tree_ticks(before, backend_pid)
    proxy_cpu = None
    if target.proxy is not None:
        pid = target.proxy.proc.pid
        proxy_cpu = _per_request_us(tree_ticks(after, pid) - tree_ticks(before, pid), wrk.requests)
    return RunResult(
        target=target.name,
        connections=connections,
        round_no=0,
        wrk=wrk,
        proxy_cpu_us_per_req=proxy_cpu,
        backend_cpu_us_per_req=_per_request_us(backend_ticks, wrk.requests),
        foreign_busy=frozenset(foreign_busy(before, after, duration)),
    )


def run_one(bench: Bench, target: Target, connections: int, round_no: int) -> None:
    duration = bench.opts.duration if round_no > 0 else bench.opts.warmup
    label = f"round {round_no}" if round_no > 0 else "warm-up"
    try:
        result = measure(bench, target, connections, duration)
    except (BenchError, subprocess.TimeoutExpired, OSError) as exc:
        log(f"ERROR: {target.name} c{connections} {label}: {exc}")
        target.failure = f"failed during c{connections} {label}: {exc}"
        return
    if result.foreign_busy:
        log(f"WARNING: other busy processes: {', '.join(sorted(result.foreign_busy))}")
    if round_no > 0:
        bench.foreign.update(result.foreign_busy)
        bench.results.append(dataclasses.replace(result, round_no=round_no))
    log(
        f"{label:8} c{connections:<5} {target.name:9} {result.wrk.rps:10.0f} rps  "
        f"errors {result.wrk.errors}  p99 {fmt_latency(result.wrk.p99_us)}  "
        f"proxy cpu {fmt_opt(result.proxy_cpu_us_per_req)} us/req"
    )
    time.sleep(bench.opts.pause)


def run_rounds(bench: Bench) -> None:
    for connections in bench.opts.connections:
        for round_no in range(0 if bench.opts.warmup else 1, bench.opts.rounds + 1):
            for target in bench.targets:
                if target.failure is None:
                    run_one(bench, target, connections, round_no)


# --------------------------------------------------------------------------- reporting


def fmt_opt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def fmt_latency(us: float) -> str:
    if us != us:
        return "n/a"
    return f"{us:.0f} µs" if us < 1000 else f"{us / 1000:.2f} ms"


def _median_opt(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(results: list[RunResult], target: str, connections: int) -> TargetSummary | None:
    runs = [r for r in results if r.target == target and r.connections == connections]
    if not runs:
        return None
    rps = [r.wrk.rps for r in runs]
    return TargetSummary(
        target=target,
        connections=connections,
        runs=len(runs),
        rps_median=statistics.median(rps),
        rps_min=min(rps),
        rps_max=max(rps),
        errors_total=sum(r.wrk.errors for r in runs),
        p50_median_us=statistics.median(r.wrk.p50_us for r in runs),
        p99_median_us=statistics.median(r.wrk.p99_us for r in runs),
        proxy_cpu_median=_median_opt([r.proxy_cpu_us_per_req for r in runs]),
        backend_cpu_median=_median_opt([r.backend_cpu_us_per_req for r in runs]),
    )


def _error_detail(results: list[RunResult], target: str, connections: int) -> str:
    runs = [r.wrk for r in results if r.target == target and r.connections == connections]
    parts = {
        "connect": sum(w.connect_errors for w in runs),
        "read": sum(w.read_errors for w in runs),
        "write": sum(w.write_errors for w in runs),
        "timeout": sum(w.timeout_errors for w in runs),
        "non-2xx": sum(w.non_2xx for w in runs),
    }
    shown = [f"{k} {v}" for k, v in parts.items() if v]
    return f" ({', '.join(shown)})" if shown else ""


def _ratio(num: float | None, den: float | None) -> str:
    if num is None or den is None or den == 0:
        return "n/a"
    return f"{num / den:.2f}"


TABLE_HEAD = (
    "| conns | target | rps median | rps min–max | errors | p50 median | p99 median "
    "| proxy CPU µs/req | nginx CPU µs/req |\n"
    "|---:|---|---:|---:|---|---:|---:|---:|---:|"
)


def table_rows(bench: Bench, connections: int) -> list[str]:
    rows = []
    for target in bench.targets:
        s = summarize(bench.results, target.name, connections)
        if s is None:
            reason = "failed, see Failures" if target.failure else "no runs"
            rows.append(f"| {connections} | {target.name} | — | — | {reason} | | | | |")
            continue
        errors = f"{s.errors_total}{_error_detail(bench.results, target.name, connections)}"
        rows.append(
            f"| {connections} | {target.name} | {s.rps_median:,.0f} | "
            f"{s.rps_min:,.0f}–{s.rps_max:,.0f} | {errors} | {fmt_latency(s.p50_median_us)} | "
            f"{fmt_latency(s.p99_median_us)} | {fmt_opt(s.proxy_cpu_median)} | "
            f"{fmt_opt(s.backend_cpu_median)} |"
        )
    return rows


def ratio_rows(bench: Bench) -> list[str]:
    rows = [
        "| conns | migproxy/HAProxy rps | HAProxy/migproxy CPU per request |",
        "|---:|---:|---:|",
    ]
    for connections in bench.opts.connections:
        hap = summarize(bench.results, "haproxy", connections)
        mig = summarize(bench.results, "migproxy", connections)
        rps = _ratio(mig.rps_median if mig else None, hap.rps_median if hap else None)
        cpu = _ratio(hap.proxy_cpu_median if hap else None, mig.proxy_cpu_median if mig else None)
        rows.append(f"| {connections} | {rps} | {cpu} |")
    if "migproxy2" in bench.opts.targets:
        rows += ["", "| conns | migproxy 2 workers / 1 worker rps |", "|---:|---:|"]
        for connections in bench.opts.connections:
            one = summarize(bench.results, "migproxy", connections)
            two = summarize(bench.results, "migproxy2", connections)
            ratio = _ratio(two.rps_median if two else None, one.rps_median if one else None)
            rows.append(f"| {connections} | {ratio} |")
    return rows


def machine_header(bench: Bench) -> list[str]:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    pinning = (
        f"proxy on CPU {PROXY_CPU}, nginx + wrk on CPU {CLIENT_CPU} (taskset)"
        if bench.pin
        else "none (fewer than 2 CPUs or no taskset)"
    )
    o = bench.opts
    return [
        "# migproxy vs HAProxy vs direct nginx",
        "",
        f"- date: {now}",
        f"- nproc: {os.cpu_count()}; CPU: {cpu_model()}",
        f"- haproxy: {command_output([HAPROXY_BIN, '-v'])}",
        f"- nginx: {command_output(['nginx', '-v'])}",
        f"- wrk: {command_output(['wrk', '-v'])}",
        f"- python: {platform.python_version()} ({sys.executable})",
        f"- pinning: {pinning}",
        f"- runs: wrk -t1 -cN -d{o.duration}s --latency, {o.rounds} interleaved round(s), "
        f"{o.warmup}s warm-up per target; close ratio {CLOSE_RATIO:g} on both proxies",
        "- CPU µs/req: utime+stime delta of the process tree / requests completed",
        *contention_note(bench),
        "",
    ]


def contention_note(bench: Bench) -> list[str]:
    if not bench.foreign:
        return []
    seen = ", ".join(sorted(bench.foreign)[:12])
    return [f"- **WARNING: other processes used CPU during the measurements** ({seen})"]


def render_report(bench: Bench) -> str:
    lines = machine_header(bench)
    lines += ["## Results", "", TABLE_HEAD]
    for connections in bench.opts.connections:
        lines += table_rows(bench, connections)
    lines += ["", "## Ratios (medians)", "", *ratio_rows(bench)]
    failures = [t for t in bench.targets if t.failure]
    if failures:
        lines += ["", "## Failures", ""]
        for t in failures:
            lines += [f"### {t.name}", "", "```", str(t.failure), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- main


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def check_tools(targets: list[str]) -> None:
    needed = ["wrk", "nginx"] + ([HAPROXY_BIN] if "haproxy" in targets else [])
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"missing tools: {', '.join(missing)}")


@contextlib.contextmanager
def bench_environment(opts: Options) -> Iterator[Bench]:
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
        cpus = os.cpu_count() or 1
        pin = cpus >= 2 and shutil.which("taskset") is not None
        if not pin:
            log(f"nproc is {cpus} (or taskset is missing): running without CPU pinning")
        yield Bench(opts=opts, workdir=Path(tmp), pin=pin)


def run_benchmark(opts: Options) -> Bench:
    nofile = raise_nofile_limit()
    if nofile < max(opts.connections) * 2 + 256:
        log(f"WARNING: open-file limit is {nofile}; high connection counts may fail")
    with bench_environment(opts) as bench, contextlib.ExitStack() as stack:
        start_backend(stack, bench, nofile)
        bench.targets = [start_target(stack, bench, name, nofile) for name in opts.targets]
        run_rounds(bench)
        return bench


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    check_tools(opts.targets)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with INT ignored
    try:
        bench = run_benchmark(opts)
    except KeyboardInterrupt:
        log("interrupted; all started processes were stopped")
        return 130
    except BenchError as exc:
        log(f"ERROR: {exc}")
        return 1
    report = render_report(bench)
    print(report, end="")
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(report)
    log(f"report written to {opts.out}")
    return 1 if any(t.failure for t in bench.targets) else 0


if __name__ == "__main__":
    sys.exit(main())
