# The lab's words: the live progress line, the results tables and the markdown report. Pure:
# data in, text out.
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from migproxy.lab.analysis import PolicySummary, StepResult
from migproxy.lab.fleet import cache_label
from migproxy.lab.model import EpochModel, ModelRow, ratio_time
from migproxy.lab.scenario import Policy, Scenario

CELL = 14  # least width of one policy's column in the live progress: "100.0% r0 e0"


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def seconds(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f} s"


def ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


# ---- live progress ---------------------------------------------------------------------------


def _widths(names: Sequence[str]) -> list[int]:
    return [max(CELL, len(name)) for name in names]


def progress_header(names: Sequence[str]) -> str:
    """The heading of the live progress: one column per policy."""
    cells = "".join(f" │ {name:<{w}}" for name, w in zip(names, _widths(names), strict=True))
    return f"{'t':>5} {'DNS old':>7}{cells}"


PROGRESS_LEGEND = (
    "each second: the old VIP's share of the fleet's requests, r = reconnects, e = client errors"
)


def progress_line(
    second: int,
    target: float,
    names: Sequence[str],
    cells: Sequence[tuple[float | None, int, int]],
) -> str:
    """One second of every policy: (old traffic share, reconnects, errors) each."""
    parts = "".join(
        f" │ {f'{pct(share):>6} r{reconnects} e{errors}':<{w}}"
        for (share, reconnects, errors), w in zip(cells, _widths(names), strict=True)
    )
    return f"{second:>4}s {pct(target, 0):>7}{parts}"


# ---- tables ----------------------------------------------------------------------------------


def _weights(step: StepResult) -> str:
    return f"{step.old:g}:{step.new:g}"


def _converged(step: StepResult) -> str:
    if step.converged is not None:
        return f"{step.converged} s"
    return "not within the step"


STEP_HEADER = (
    "| step | DNS old:new | tolerance | converged after | old share at end | reconnects "
    "| clients moved | reconnects / client moved | returning | closes held (back-off) "
    "| client errors |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
)


def step_rows(summary: PolicySummary) -> list[str]:
    """The per-step table of one policy, with a total row."""
    rows = list(STEP_HEADER)
    for step in summary.steps:
        rows.append(
            f"| {step.number} at {step.at} s | {_weights(step)} | ±{pct(step.tolerance)} "
            f"| {_converged(step)} | {pct(step.final_share)} | {step.reconnects} "
            f"| {step.moved} | {ratio(step.reconnects_per_moved)} | {step.returning} "
            f"| {step.held} | {step.errors} |"
        )
    held = sum(step.held for step in summary.steps)
    rows.append(
        f"| total | | | | | {summary.reconnects} | {summary.moved} "
        f"| {ratio(summary.reconnects_per_moved)} | {summary.returning} | {held} "
        f"| {summary.errors} |"
    )
    return rows


def summary_rows(summaries: Sequence[PolicySummary]) -> list[str]:
    """One row per policy: convergence after each step, reconnects, errors (the README's)."""
    steps = summaries[0].steps if summaries else ()
    heads = "".join(f" converged after step {s.number} ({_weights(s)}) |" for s in steps)
    rows = [
        f"| policy |{heads} reconnects | clients moved | reconnects / client moved "
        "| returning | client errors |",
        "|---|" + "---:|" * (len(steps) + 5),
    ]
    for summary in summaries:
        cells = "".join(f" {_converged(step)} |" for step in summary.steps)
        rows.append(
            f"| {summary.name} |{cells} {summary.reconnects} | {summary.moved} "
            f"| {ratio(summary.reconnects_per_moved)} | {summary.returning} | {summary.errors} |"
        )
    return rows


@dataclass(frozen=True, slots=True)
class ModelSection:
    """The model comparison of one policy: per full step its class rows, the fleet's model
    time against the measured one, and the epoch budget model."""

    policy: Policy
    rows: Sequence[ModelRow]
    fleet: Sequence[tuple[StepResult, float | None]]  # (measured step, model time)
    epochs: Sequence[tuple[StepResult, EpochModel]]


def _class_table(section: ModelSection, epsilon: float) -> list[str]:
    """The per-class table of a ratio policy ([] when it has no rows)."""
    if not section.rows:
        return []
    p = section.policy.ratio
    lines = [
        f"`{section.policy.name}` (ratio p = {p:g}), per class of clients on the VIP the step "
        f"emptied. A move is a client's first request to the other VIP. t(ε): the time "
        f"by which all but ε = {epsilon:g} of the class had moved; for a class of n "
        "clients the model's is the expected ⌈(1−ε)n⌉-th move (the last one when "
        "n < 1/ε), which the large-fleet limit ln(1/ε)/(p·λ) overestimates. "
        "A cached client moves at the first close after its cache expired:",
        "",
        "| step | λ req/s | DNS cache | clients | cache fresh at step | moved "
        "| mean move: model | measured | t(ε): model | measured | ln(1/ε)/(p·λ) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in section.rows:
        lines.append(
            f"| {row.step} | {row.rate:g} | {cache_label(row.cache)} | {row.clients} "
            f"| {row.fresh} | {row.moved} | {seconds(row.model_mean, 1)} "
            f"| {seconds(row.measured_mean, 1)} | {seconds(row.model_eps, 1)} "
            f"| {seconds(row.measured_eps, 1)} "
            f"| {seconds(ratio_time(p, row.rate, epsilon), 1)} |"
        )
    return [*lines, ""]


def _epoch_line(policy: Policy, step: StepResult, epoch: EpochModel) -> str:
    budget = f"{epoch.budget:g}/s" if epoch.budget else "no budget"
    stay = "only a later ratio close moves them" if policy.ratio > 0 else "and stay there"
    held = f"; {step.held} closes held back for returning clients" if step.held else ""
    fresh = (
        f"; {epoch.fresh} of those clients had a fresh DNS cache at the step (they come back "
        f"on a connection that is not stale, {stay})"
        if epoch.fresh
        else ""
    )
    return (
        f"- `{policy.name}` step {step.number}: {epoch.stale} stale connections at "
        f"{budget}: all closed after ≈ {seconds(epoch.seconds, 1)} by the model{fresh}; "
        f"measured: {_converged(step)}, old share at the end of the step "
        f"{pct(step.final_share)}{held}."
    )


def model_lines(section: ModelSection, epsilon: float) -> list[str]:
    """Markdown for one policy's model comparison ([] when the model says nothing of it)."""
    policy = section.policy
    lines = _class_table(section, epsilon)
    for step, model in section.fleet:
        lines.append(
            f"- `{policy.name}` step {step.number}: fleet traffic share within "
            f"±{pct(step.tolerance)} after {seconds(model, 1)} by the model, "
            f"{_converged(step)} measured."
        )
    lines += [_epoch_line(policy, step, epoch) for step, epoch in section.epochs]
    if section.fleet or section.epochs:
        lines.append("")
    return lines


def crosscheck_rows(summaries: Sequence[PolicySummary]) -> list[str]:
    rows = [
        "| policy | requests old: clients / proxy | requests new: clients / proxy "
        "| connections old: clients / proxy | connections new: clients / proxy "
        "| largest gap of the old share (5 s windows) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        rows.append(
            f"| {s.name} | {s.client_requests[0]} / {s.proxy_requests[0]} "
            f"| {s.client_requests[1]} / {s.proxy_requests[1]} "
            f"| {s.client_connects[0]} / {s.proxy_connects[0]} "
            f"| {s.client_connects[1]} / {s.proxy_connects[1]} | {pct(s.max_share_gap, 2)} |"
        )
    return rows


def scenario_lines(scenario: Scenario) -> list[str]:
    caches = ", ".join(f"{cache_label(c.seconds)} {c.share:.0%}" for c in scenario.dns_cache)
    weights = ", ".join(f"{s.old:g}:{s.new:g} at {s.at:g} s" for s in scenario.weights)
    lines = [
        f"- fleet: {scenario.clients} keep-alive clients, each from its own source address "
        f"(127.1.x.y); rates {', '.join(f'{r:g}' for r in scenario.rates)} req/s "
        f"(spread evenly); DNS cache {caches}",
        f"- GSLB: one address per answer, drawn by weight, TTL {scenario.ttl} s; old:new "
        f"weights {weights}; {scenario.duration} s in all",
        f"- policies run {'at once, each on its own ports' if scenario.concurrent else 'in turn'}"
        f"; convergence: old share over a centered {scenario.window} s window within "
        f"max(ε = {scenario.epsilon:g}, 2σ) of the DNS split for {scenario.hold} s",
    ]
    for policy in scenario.policies:
        keys = ", ".join(f"{k} = {v}" for k, v in policy.close.items()) or "nothing injected"
        epoch = "; epoch at each step (POST /migration/epoch)" if policy.epoch else ""
        when = " from the start" if policy.start == "start" else " from the first step"
        lines.append(f"- `{policy.name}`: [close] {keys}{when if policy.close else ''}{epoch}")
    return lines


DEFINITIONS = """\
- *Old share*: the old VIP's share of the requests the clients got answered, per second, as the
  clients counted them (the proxies' /metrics agree: see the cross-check).
- *Converged after*: seconds from the weight step until the old share, over a centered moving
  window, is within the tolerance of the DNS split and stays there for the hold time. The
  tolerance is max(ε, 2σ), σ being the noise of the split itself: each client lands on a VIP
  as a weighted coin falls, so even a fleet that follows DNS perfectly has an old share of
  s ± sqrt(s(1−s)·Σλ²)/Σλ (0 at 0:100; about 7% at 50:50 for 100 clients of 1, 5 and 20
  req/s).
- *Reconnects*: connections the clients opened after their first one. *Clients moved*: clients
  whose last request before the step's end went to another VIP than their last one before
  it. *Returning*: reconnects migproxy counted as returning (an address coming back within
  returning_window after a close it injected: its DNS cache still pointed there, or DNS
  sent it back). *Closes held (back-off)*: injected closes the proxies put off because the
  client was returning (`migproxy_deferred_closes_total{cause="returning_backoff"}`).
- *Client errors*: failed lookups, connects and requests, responses other than 200, and
  responses from the other VIP's backend.
"""


def markdown_report(
    scenario: Scenario,
    summaries: Sequence[PolicySummary],
    sections: Sequence[ModelSection],
    heading: str,
    plot_name: str,
) -> str:
    """The whole report: scenario, results per policy, model, cross-check, definitions."""
    lines = [f"# migproxy lab: {scenario.source}", "", heading, "", "## Scenario", ""]
    lines += scenario_lines(scenario)
    lines += ["", "## Results", "", *summary_rows(summaries), ""]
    lines += [f"![old-VIP traffic share]({plot_name})", ""]
    for summary in summaries:
        lines += [f"### {summary.name}", "", *step_rows(summary), ""]
        if summary.error_kinds:
            kinds = ", ".join(f"{kind}: {n}" for kind, n in sorted(summary.error_kinds.items()))
            lines += [f"Client errors by kind: {kinds}.", ""]
    lines += ["## Model and measurement", ""]
    for section in sections:
        lines += model_lines(section, scenario.epsilon)
    lines += ["## Cross-check: the clients' counts and the proxies' /metrics", ""]
    lines += [*crosscheck_rows(summaries), "", "## Definitions", "", DEFINITIONS]
    return "\n".join(lines)
