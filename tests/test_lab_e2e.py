# `migproxy lab --quick` end to end: real `migproxy run` processes on 127.0.0.2 and 127.0.0.3,
# the lab's GSLB DNS server and its client fleet. Asserts the qualitative outcome of issue #6,
# never timings beyond its bounds: without injection the old VIP keeps the traffic of the
# clients' live connections after the weights move to 0:100; with injection its share falls
# under 5% within the time the scenario leaves after the step; no policy costs a client error;
# the report and the plot are written; and every process the lab started is gone afterwards,
# also after Ctrl-C or SIGTERM, and even after the lab was killed outright.
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from migproxy.lab.ports import (
    LAB_PORTS_LOW,
    LabError,
    check_addresses,
    free_port,
    service_port,
)
from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[1]
LAB = [sys.executable, "-m", "migproxy", "lab", "--quick"]
RUN_TIMEOUT = 150  # seconds; the quick scenario takes about 30
FLOOR = 0.05  # the old VIP's share an injecting policy must fall under
WINDOW = 3  # seconds over which a share is taken


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        unavailable("matplotlib is required (pip install -e '.[lab]'; scripts/setup does)")


def lab_processes() -> list[int]:
    """Pids of `migproxy run` processes started by a lab (their config is in a lab dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"migproxy-lab-" in cmdline and b"run" in cmdline:
            found.append(int(entry.name))
    return found


def await_first_progress_line(lab: subprocess.Popen[str]) -> None:
    """Read the lab's output up to its first progress line ("0s ..."): its proxies and fleet
    are running then. Fails with everything the lab said if it ended before that line."""
    assert lab.stdout is not None
    said = []
    for line in lab.stdout:
        if line.lstrip().startswith("0s"):
            return
        said.append(line)
    _, err = lab.communicate(timeout=30)
    pytest.fail(f"the lab ended ({lab.returncode}) before it ran:\n{''.join(said)}{err}")


def lab_directories() -> set[Path]:
    """The lab's per-run temporary directories (config files and proxy logs)."""
    return set(Path(tempfile.gettempdir()).glob("migproxy-lab-*"))


def windowed_old_share(series: dict[str, list[float]], start: int, end: int) -> float:
    old = sum(series["requests_old"][start:end])
    new = sum(series["requests_new"][start:end])
    assert old + new > 0, f"no requests in seconds {start}..{end}"
    return old / (old + new)


@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_quick_lab_moves_the_traffic_only_with_injection(tmp_path: Path) -> None:
    require_matplotlib()
    out = tmp_path / "lab"
    done = subprocess.run(
        [*LAB, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"report: {out / 'report.md'}" in done.stdout
    assert (out / "convergence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "## Model and measurement" in report and "ln(1/ε)/(p·λ)" in report
    data = json.loads((out / "results.json").read_text())
    targets = data["target_old_share"]
    step = targets.index(0.0)  # the second the weights moved to 0:100
    end = len(targets)
    policies = {p["summary"]["name"]: p for p in data["policies"]}
    for name, policy in policies.items():
        summary, series = policy["summary"], policy["series"]
        assert summary["errors"] == 0, (name, summary["error_kinds"])
        # the proxies' /metrics saw the same traffic as the clients (to the requests in
        # flight when the run ended)
        for vip in (0, 1):
            ours, theirs = summary["client_requests"][vip], summary["proxy_requests"][vip]
            assert abs(ours - theirs) <= max(20, 0.01 * ours), (name, vip, ours, theirs)
        if name == "none":
            # nobody reconnects: the old VIP keeps the traffic of every live connection
            assert windowed_old_share(series, end - WINDOW, end) > 0.9, name
            assert summary["reconnects"] == 0
            continue
        shares = [windowed_old_share(series, s, s + WINDOW) for s in range(step, end - WINDOW + 1)]
        below = [s for s in shares if s < FLOOR]
        assert below, f"{name}: the old share never fell under {FLOOR:.0%}: {shares}"
        first = shares.index(below[0])
        assert all(s < FLOOR for s in shares[first:]), (name, shares)
        assert summary["moved"] > 0 and summary["reconnects"] >= summary["moved"]
    assert lab_processes() == []


# A shell starts a background job with SIGINT ignored (`migproxy lab ... &`): SIGTERM must
# still stop it.
IN_BACKGROUND = ["sh", "-c", 'trap \'\' INT; exec "$0" "$@"']


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("signum", "launcher"),
    [(signal.SIGINT, []), (signal.SIGTERM, []), (signal.SIGTERM, IN_BACKGROUND)],
    ids=["ctrl-c", "sigterm", "sigterm-in-background"],
)
def test_a_signal_stops_everything_the_lab_started(
    tmp_path: Path, signum: int, launcher: list[str]
) -> None:
    require_matplotlib()
    before = lab_directories()
    with subprocess.Popen(
        [*launcher, *LAB, "--out", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as lab:
        try:
            await_first_progress_line(lab)
            assert lab_processes(), "the lab's proxies should be running"
            lab.send_signal(signum)
            _, err = lab.communicate(timeout=30)
        finally:
            if lab.poll() is None:
                lab.kill()
                lab.communicate()
    assert lab.returncode == 130, err
    assert "interrupted" in err
    assert lab_processes() == []
    assert lab_directories() <= before  # its temporary files are gone too
    assert not (tmp_path / "report.md").exists()


@pytest.mark.timeout(90)
def test_proxies_do_not_outlive_a_killed_lab(tmp_path: Path) -> None:
    require_matplotlib()
    before = lab_directories()
    with subprocess.Popen(
        [*LAB, "--out", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as lab:
        await_first_progress_line(lab)
        assert lab_processes()
        lab.kill()  # SIGKILL: no clean-up of its own; the kernel tells the proxies
        lab.wait(10)
    deadline = time.monotonic() + 30
    while lab_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lab_processes() == []
    for directory in lab_directories() - before:  # a killed lab cannot remove its own
        shutil.rmtree(directory, ignore_errors=True)


def test_no_port_is_handed_out_twice() -> None:
    # several policy runs pick ports at once, and migproxy binds with SO_REUSEPORT
    ports = [free_port() for _ in range(30)] + [service_port(("127.0.0.2", "127.0.0.3"))]
    assert len(set(ports)) == len(ports)


def test_ports_come_from_below_the_kernels_own_range() -> None:
    # The kernel gives ports of its range to sockets bound to port 0 and to outgoing
    # connections: one of those could take a port between its hand-out and the proxy's bind.
    with open("/proc/sys/net/ipv4/ip_local_port_range") as file:
        kernel_low = int(file.read().split()[0])
    assert kernel_low > LAB_PORTS_LOW + 1000, "this test assumes Linux's usual range"
    ports = [free_port() for _ in range(20)]
    assert all(LAB_PORTS_LOW <= port < kernel_low for port in ports), ports


def test_unusable_addresses_and_ports_are_one_clear_error() -> None:
    with pytest.raises(LabError, match=r"192\.0\.2\.1 is not usable here: .*alias"):
        check_addresses(["127.0.0.2", "192.0.2.1"])  # TEST-NET-1: never local
    port = service_port(("127.0.0.2", "127.0.0.3"))
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.3", port))
        taken.listen()
        with pytest.raises(LabError, match=rf"port {port} on 127\.0\.0\.3 is not usable"):
            service_port(("127.0.0.2", "127.0.0.3"), port)


def test_an_invalid_scenario_is_one_line_and_status_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        "duration = 10\nweights = [[0, 1, 0]]\n[clients]\ncount = 1\nrates = [1]\n"
        '[[policy]]\nname = "x"\nclose = { ratio = 3 }\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "migproxy", "lab", "--scenario", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"{bad}: policy[0].close.ratio: must be a number between 0.0 and 1.0, got 3"
    )
