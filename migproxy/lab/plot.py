# The lab's figure: the old VIP's traffic share against time for every policy, on one chart,
# with the DNS split drawn; below it, the reconnects per second (what moving costs).
#
# matplotlib is the `lab` extra (pip install -e '.[lab]'): imported only here, on the Agg
# backend (a file, never a display), and checked before a run starts (require_matplotlib), so
# a missing install is said at once instead of after the measurement.
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from migproxy.lab.analysis import share_series, target_series
from migproxy.lab.ports import LabError
from migproxy.lab.record import NEW, OLD, RunResult
from migproxy.lab.scenario import Scenario

if TYPE_CHECKING:  # matplotlib is imported only when a plot is drawn
    from matplotlib.axes import Axes


def require_matplotlib() -> None:
    """Raise LabError unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise LabError(
            "the lab's plot needs matplotlib: pip install -e '.[lab]' (scripts/setup does)"
        ) from None


def _percent(values: Sequence[float | None]) -> list[float]:
    return [float("nan") if v is None else 100 * v for v in values]


def _draw_target(axis: Axes, scenario: Scenario, slots: int) -> None:
    targets = target_series(scenario)
    axis.step(
        list(range(slots + 1)),
        _percent([*targets, targets[-1]]),
        where="post",
        color="black",
        linestyle="--",
        linewidth=1.5,
        label="DNS split (GSLB weights)",
    )


def write_plot(path: Path, scenario: Scenario, results: Sequence[RunResult]) -> None:
    """Draw the figure into `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    slots = results[0].recorder.slots if results else 0
    middles = [slot + 0.5 for slot in range(slots)]  # a second's count, drawn at its middle
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    _draw_target(top, scenario, slots)
    for result in results:
        rec = result.recorder
        shares = _percent(share_series(rec.requests[OLD], rec.requests[NEW]))
        (line,) = top.plot(middles, shares, label=result.policy.name, linewidth=1.6)
        bottom.plot(middles, rec.reconnects, color=line.get_color(), linewidth=1.2)
    for step in scenario.steps:
        for axis in (top, bottom):
            axis.axvline(step.at, color="grey", linewidth=0.6, linestyle=":")
    top.set_ylabel("old VIP's share of requests (%)")
    top.set_ylim(-2, 102)
    top.set_title(
        f"VIP migration: {scenario.clients} keep-alive clients, old-VIP traffic share by policy"
    )
    top.legend(loc="upper right", fontsize="small")
    top.grid(alpha=0.3)
    bottom.set_ylabel("reconnects / s")
    bottom.set_yscale("symlog", linthresh=10)  # 1 a second and 1000 a second both show
    peak = max((max(result.recorder.reconnects, default=0) for result in results), default=0)
    bottom.set_ylim(0, max(10, peak) * 2)  # room above the busiest policy; no negative axis
    bottom.set_xlabel("seconds since the fleet started (one point per second)")
    bottom.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
