# Synthetic lab data for the pure tests: scenarios built in code, and recorders filled with
# per-second counts as if a fleet had run, without any socket.
from __future__ import annotations

from collections.abc import Sequence

from migproxy.lab.fleet import ClientSpec
from migproxy.lab.record import NEW, OLD, ProxySeries, Recorder, RunResult
from migproxy.lab.scenario import Policy, Scenario, parse_scenario


def scenario(**overrides: object) -> Scenario:
    """A small valid scenario; keyword arguments replace top-level keys or tables."""
    data: dict[str, object] = {
        "duration": 20,
        "weights": [[0, 100, 0], [5, 0, 100]],
        "clients": {"count": 4, "rates": [1, 2]},
        "policy": [{"name": "none"}, {"name": "ratio", "close": {"ratio": 0.5}}],
    }
    data.update(overrides)
    return parse_scenario(data, "test.toml")


def specs(rates: Sequence[float], cache: float | None = 0.0) -> tuple[ClientSpec, ...]:
    return tuple(
        ClientSpec(i, rate, cache, f"127.1.0.{i + 1}", 0.0) for i, rate in enumerate(rates)
    )


def fill(recorder: Recorder, slot: int, old: int, new: int) -> None:
    """Count `old` and `new` requests in `slot` (client 0 of the fleet sends them)."""
    recorder.requests[OLD][slot] += old
    recorder.requests[NEW][slot] += new


def result(policy: Policy, recorder: Recorder) -> RunResult:
    return RunResult(policy, recorder, ProxySeries(recorder.slots))
