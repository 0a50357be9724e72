# A real Prometheus for the end-to-end tests: /usr/bin/prometheus on a free loopback port,
# scraping the given admin endpoints every second with the shipped recording and alerting
# rules loaded, queried through its HTTP API. Everything it starts is stopped on exit, and
# every wait is bounded (a number of attempts, not a wall-clock loop).
from __future__ import annotations

import contextlib
import json
import math
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from tests.conftest import require_tool
from tests.e2e.servers import ROOT, free_port

RULES_FILE = ROOT / "config" / "prometheus" / "rules.yml"
START_TIMEOUT = 20.0
HTTP_TIMEOUT = 5.0
POLL_INTERVAL = 0.25
STOP_TIMEOUT = 10.0


class Sample(NamedTuple):
    """One series of an instant-query answer: its labels (with __name__ when kept) and value."""

    labels: dict[str, str]
    value: float


class PrometheusError(RuntimeError):
    """Prometheus answered an API call with an error (bad query, unknown endpoint)."""


@dataclass
class Prometheus:
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>?params and return its `data`, or raise PrometheusError."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as resp:
                body = resp.read()
        except urllib.error.HTTPError as err:
            # 400/422/503 carry a JSON error document; anything else is reported as it is.
            try:
                body = err.read()
            finally:
                err.close()
            if not body.startswith(b"{"):
                raise PrometheusError(f"{url}: HTTP {err.code}: {body[:200]!r}") from err
        answer = json.loads(body)
        if answer.get("status") != "success":
            raise PrometheusError(
                f"{path} {params}: {answer.get('errorType')}: {answer.get('error')}"
            )
        return answer["data"]

    def query(self, expr: str) -> list[Sample]:
        """Evaluate `expr` now (an instant query); a scalar comes back as one label-less sample."""
        data = self.api("query", query=expr)
        kind = data["resultType"]
        if kind == "vector":
            return [
                Sample(dict(item["metric"]), float(item["value"][1])) for item in data["result"]
            ]
        if kind == "scalar":
            return [Sample({}, float(data["result"][1]))]
        raise PrometheusError(f"{expr!r}: a {kind} result, not an instant vector or scalar")

    def value(self, expr: str) -> float | None:
        """The value of an expression that yields at most one series (None: no series)."""
        found = self.query(expr)
        if len(found) > 1:
            raise PrometheusError(f"{expr!r} returned {len(found)} series, expected one")
        return found[0].value if found else None

    def wait_until(
        self,
        expr: str,
        predicate: Callable[[list[Sample]], bool],
        timeout: float = 10.0,
        interval: float = POLL_INTERVAL,
    ) -> list[Sample]:
        """Query `expr` until `predicate` holds for the answer, at most timeout/interval times.

        Returns the last answer either way, so the caller's assertion shows what was there.
        """
        attempts = max(1, math.ceil(timeout / interval))
        found: list[Sample] = []
        for attempt in range(attempts):
            found = self.query(expr)
            if predicate(found):
                return found
            if attempt + 1 < attempts:
                time.sleep(interval)
        return found

    def wait_for_targets(self, count: int, timeout: float = 10.0) -> list[Sample]:
        """Wait until `count` targets have been scraped successfully (their `up` is 1)."""
        return self.wait_until(
            "up == 1", lambda found: len(found) >= count, timeout=timeout, interval=0.1
        )

    def rule_groups(self) -> list[dict[str, Any]]:
        """The loaded rule groups, as /api/v1/rules describes them."""
        groups: list[dict[str, Any]] = self.api("rules")["groups"]
        return groups


def render_config(targets: Sequence[str], rule_files: Sequence[Path]) -> str:
    """prometheus.yml (JSON is YAML): scrape `targets` (host:port) every second."""
    config = {
        "global": {
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "evaluation_interval": "1s",
        },
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": "migproxy",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": list(targets)}],
            }
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def _wait_ready(prom: Prometheus, timeout: float) -> None:
    attempts = max(1, math.ceil(timeout / 0.1))
    for _ in range(attempts):
        if prom.proc.poll() is not None:
            raise RuntimeError(
                f"prometheus exited with {prom.proc.returncode} before ready:\n{prom.log()[-3000:]}"
            )
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(prom.url + "/-/ready", timeout=1.0) as resp:
                if resp.status == 200:
                    return
        time.sleep(0.1)
    raise TimeoutError(f"prometheus not ready after {timeout} s:\n{prom.log()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)


@contextlib.contextmanager
def run_prometheus(
    targets: Sequence[str], rule_files: Sequence[Path] = (RULES_FILE,)
) -> Iterator[Prometheus]:
    """Run /usr/bin/prometheus scraping `targets` ("127.0.0.1:port" admin endpoints).

    Fails under CI (skips elsewhere) when prometheus is not installed. A rule file that does
    not load makes Prometheus exit, which is reported with its log.
    """
    binary = require_tool("prometheus")
    for path in rule_files:
        if not path.is_file():
            raise FileNotFoundError(f"rule file {path} does not exist")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="migproxy-prometheus-") as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text(render_config(targets, rule_files))
        log_path = Path(tmp) / "prometheus.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={Path(tmp) / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=info",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=tmp,
            )
        prom = Prometheus(port, proc, log_path)
        try:
            _wait_ready(prom, START_TIMEOUT)
            yield prom
        finally:
            _stop(proc)
