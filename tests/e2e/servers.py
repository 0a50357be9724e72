# Real processes and servers for the end-to-end tests: migproxy and the demo backend as
# subprocesses, nginx from Debian, and a scripted raw-socket upstream in a thread.
# Everything started here is stopped by its context manager, within bounded time.
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes] | None, timeout: float, host: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout} s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def render_config(sections: dict[str, dict[str, object]]) -> str:
    """TOML for `sections`; a dict value is a nested table ([upstream.health])."""
    out: list[str] = []

    def table(name: str, keys: dict[str, object]) -> None:
        out.append(f"[{name}]")
        nested = {key: value for key, value in keys.items() if isinstance(value, dict)}
        out.extend(
            f"{key} = {toml_value(value)}" for key, value in keys.items() if key not in nested
        )
        for key, value in nested.items():
            table(f"{name}.{key}", value)

    for name, keys in sections.items():
        table(name, keys)
    return "\n".join(out) + "\n"


def rewrite(proxy: Proxy, **sections: dict[str, object]) -> None:
    """Change keys of the proxy's config file (sections merge into what is there)."""
    assert proxy.config_path is not None
    config = tomllib.loads(proxy.config_path.read_text())
    for name, keys in sections.items():
        config.setdefault(name, {}).update(keys)
    proxy.config_path.write_text(render_config(config))


@dataclass
class Proxy:
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    admin_port: int = 0
    config_path: Path | None = None  # the file it was started with (reload tests rewrite it)

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop the proxy now (SIGTERM, graceful drain), so its log is complete."""
        stop_process(self.proc)


@contextlib.contextmanager
def run_proxy(
    upstream_port: int,
    *,
    uvloop: bool = True,
    env: dict[str, str] | None = None,
    nofile: tuple[int, int] | None = None,
    **sections: dict[str, object],
) -> Iterator[Proxy]:
    """Start `migproxy run` in front of 127.0.0.1:upstream_port; sections override config.

    `uvloop=False` runs the proxy on the stdlib asyncio loop instead; `nofile` starts it
    with that (soft, hard) RLIMIT_NOFILE (through prlimit(1), which execs it: a preexec_fn
    could deadlock the fork while other test threads hold locks).
    """
    port = free_port()
    admin_port = free_port()
    config: dict[str, dict[str, object]] = {
        "listen": {"address": f"127.0.0.1:{port}"},
        "upstream": {"address": f"127.0.0.1:{upstream_port}"},
        "admin": {"address": f"127.0.0.1:{admin_port}"},
        # Every test client connects from 127.0.0.1: the returning-client back-off would take
        # them all for one client coming back after each close. Tests of it turn it on.
        "close": {"returning_window": 0},
    }
    for name, keys in sections.items():
        config.setdefault(name, {}).update(keys)
    with tempfile.TemporaryDirectory(prefix="migproxy-test-") as tmp:
        path = Path(tmp) / "migproxy.toml"
        path.write_text(render_config(config))
        log_path = Path(tmp) / "migproxy.log"
        with log_path.open("wb") as log:
            limit = []  # prlimit is util-linux's, on every Debian machine
            if nofile is not None:
                limit = [require_tool("prlimit"), f"--nofile={nofile[0]}:{nofile[1]}"]
            proc = subprocess.Popen(
                [*limit, sys.executable, "-m", "migproxy", "run", "--config", str(path)]
                + ([] if uvloop else ["--no-uvloop"]),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, **(env or {})},
            )
        try:
            wait_for_port(port, proc, START_TIMEOUT)
            wait_for_port(admin_port, proc, START_TIMEOUT)
            yield Proxy(port, proc, log_path, admin_port, path)
        finally:
            stop_process(proc)


@contextlib.contextmanager
def run_backend(
    host: str = "127.0.0.1", port: int = 0, name: str = "demo-backend"
) -> Iterator[int]:
    """The bundled demo backend (aiohttp) on host:port (a free port if 0); it answers
    `GET /` with "hello from NAME"."""
    port = port or free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "migproxy",
            "demo-backend",
            "--listen",
            f"{host}:{port}",
            "--name",
            name,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        wait_for_port(port, proc, START_TIMEOUT, host)
        yield port
    finally:
        stop_process(proc)


NGINX_CONF = """
worker_processes 1;
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 100000;
  keepalive_timeout 75s;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
  uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 "hello from nginx\\n"; }}
  }}
}}
"""


@contextlib.contextmanager
def run_nginx(nginx: str) -> Iterator[int]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="migproxy-nginx-") as tmp:
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=port))
        proc = subprocess.Popen(
            [nginx, "-c", str(conf), "-e", f"{tmp}/error.log"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, proc, START_TIMEOUT)
            yield port
        finally:
            stop_process(proc)


Script = Callable[[socket.socket, bytes], None]


POLL_LIMIT = 5.0  # most seconds read_until_closed and wait_until run


def read_until_closed(sock: socket.socket, into: bytearray | None = None) -> bytes:
    """For a ScriptedUpstream script: everything the peer sends until it closes or resets
    (bounded in time); each piece is also appended to `into` as it arrives, if given."""
    data = bytearray() if into is None else into
    start = len(data)
    deadline = time.monotonic() + POLL_LIMIT
    while time.monotonic() < deadline:
        try:
            piece = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not piece:
            break
        data += piece
    return bytes(data[start:])


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` until it holds (bounded in time; fails naming `what`)."""
    deadline = time.monotonic() + POLL_LIMIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def answer_ok(sock: socket.socket, head: bytes) -> None:
    """A ScriptedUpstream script: a keep-alive 200 with a two-byte body, for any request."""
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


@dataclass
class ScriptedUpstream:
    """A raw-socket upstream: for each request head received, `script(sock, head)` answers.

    Every head it receives is recorded in `heads` (what the upstream actually saw).
    """

    script: Script
    port: int = 0  # 0: a free port, chosen when entered
    host: str = "127.0.0.1"
    heads: list[bytes] = field(default_factory=list)
    connections: int = 0
    _server: socket.socket | None = None
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> ScriptedUpstream:
        self._server = socket.create_server((self.host, self.port))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        thread = threading.Thread(target=self._accept_loop, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        if self._server is not None:
            self._server.close()

    def _accept_loop(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                sock, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(0.2)
        buf = b""
        with sock:
            while not self._stop.is_set():
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    try:
                        data = sock.recv(65536)
                    except TimeoutError:
                        continue
                    except OSError:
                        return
                    if not data:
                        return
                    buf += data
                    continue
                head, buf = buf[: end + 4], buf[end + 4 :]
                self.heads.append(head)
                try:
                    self.script(sock, head)
                except OSError:
                    return
                if os.environ.get("MIGPROXY_TEST_DEBUG"):
                    print("upstream answered", head.split(b"\r\n", 1)[0])
