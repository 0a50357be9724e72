# A proxy's admin endpoint from the tests: /metrics samples, plain fetches, POST requests.
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

SCRAPE_TIMEOUT = 5.0


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def samples(admin_url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics, keyed by (name, labels)."""
    status, text = fetch(admin_url + "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def wait_for(admin_url: str, name: str, expected: float, **labels: str) -> float:
    """Scrape until `name{labels}` reaches `expected` (closes are counted when they happen)."""
    deadline = time.monotonic() + SCRAPE_TIMEOUT
    while True:
        got = value(samples(admin_url), name, **labels)
        if got >= expected or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def post(url: str, body: bytes = b"", token: str = "") -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=SCRAPE_TIMEOUT) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        text = err.read()
        return err.code, json.loads(text) if text.startswith(b"{") else {"text": text.decode()}
