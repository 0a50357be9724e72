# `migproxy lab`: run a scenario (config/lab/*.toml), show its progress live, and write the
# report (markdown), the figure (PNG) and the raw results (JSON) into --out.
#
# Exit status: 0 after a run, 1 for an invalid scenario or a lab that cannot run (one line
# saying why), 130 after Ctrl-C. Whatever happens, every process the lab started is stopped
# before it exits: the run's own clean-up (run.py), and kill_leftovers() as a last resort.
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from migproxy.config import ConfigError
from migproxy.lab.analysis import PolicySummary, summarize, target_series
from migproxy.lab.fleet import ClientSpec, build_fleet, source_address
from migproxy.lab.model import epoch_model, fleet_time, is_ratio_policy, ratio_rows
from migproxy.lab.plot import require_matplotlib, write_plot
from migproxy.lab.ports import LOCAL, NEW_VIP, OLD_VIP, LabError, check_addresses
from migproxy.lab.proxies import kill_leftovers
from migproxy.lab.record import NEW, OLD, VIPS, RunResult
from migproxy.lab.report import (
    PROGRESS_LEGEND,
    ModelSection,
    markdown_report,
    model_lines,
    progress_header,
    progress_line,
    summary_rows,
)
from migproxy.lab.run import PolicyRun, run_scenario
from migproxy.lab.scenario import Scenario, load_scenario
from migproxy.loop import loop_factory

SCENARIOS = Path(__file__).resolve().parents[2] / "config" / "lab"
DEFAULT_OUT = "lab-output"
REPORT, PLOT, RESULTS = "report.md", "convergence.png", "results.json"


class Progress:
    """Prints the live progress: a heading per group of runs, then one line per second."""

    def __init__(self, scenario: Scenario, out: TextIO) -> None:
        self.targets = target_series(scenario)
        self.out = out
        self.names: tuple[str, ...] = ()

    def __call__(self, second: int, runs: Sequence[PolicyRun]) -> None:
        names = tuple(run.policy.name for run in runs)
        if names != self.names:
            self.names = names
            print(progress_header(names), file=self.out)
        cells = []
        for run in runs:
            rec = run.recorder
            old, new = rec.requests[OLD][second], rec.requests[NEW][second]
            share = old / (old + new) if old + new else None
            cells.append((share, rec.reconnects[second], rec.errors[second]))
        line = progress_line(second, self.targets[second], names, cells)
        print(line, file=self.out, flush=True)


def model_sections(
    scenario: Scenario,
    specs: Sequence[ClientSpec],
    results: Sequence[RunResult],
    summaries: Sequence[PolicySummary],
) -> list[ModelSection]:
    """The model's view of every policy it applies to."""
    sections = []
    for result, summary in zip(results, summaries, strict=True):
        numbers = range(1, len(scenario.weights))
        rows = [row for n in numbers for row in ratio_rows(result, scenario, specs, n)]
        fleet = [
            (step, fleet_time(result, scenario, specs, step.number, step.tolerance))
            for step in summary.steps
            if is_ratio_policy(result)
        ]
        epochs = [
            (step, model)
            for step in summary.steps
            if (model := epoch_model(result, scenario, specs, step.number)) is not None
        ]
        sections.append(ModelSection(result.policy, rows, fleet, epochs))
    return sections


def _series(result: RunResult) -> dict[str, list[float]]:
    rec, proxies = result.recorder, result.proxies
    out: dict[str, list[float]] = {}
    for vip in (OLD, NEW):
        name = VIPS[vip]
        out[f"requests_{name}"] = [float(n) for n in rec.requests[vip]]
        out[f"lookups_{name}"] = [float(n) for n in rec.lookups[vip]]
        out[f"proxy_requests_{name}"] = proxies.series(name, "migproxy_requests_total")
    out["reconnects"] = [float(n) for n in rec.reconnects]
    out["errors"] = [float(n) for n in rec.errors]
    out["returning"] = [
        a + b
        for a, b in zip(
            proxies.series("old", "migproxy_returning_reconnects_total"),
            proxies.series("new", "migproxy_returning_reconnects_total"),
            strict=True,
        )
    ]
    return out


def write_outputs(
    out: Path,
    scenario: Scenario,
    specs: Sequence[ClientSpec],
    results: Sequence[RunResult],
    elapsed: float,
) -> tuple[list[PolicySummary], list[ModelSection]]:
    """Write report.md, convergence.png and results.json into `out`."""
    summaries = [summarize(result, scenario, specs) for result in results]
    sections = model_sections(scenario, specs, results, summaries)
    heading = (
        f"Run {time.strftime('%Y-%m-%d %H:%M %Z')} on {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; the whole run took {elapsed:.0f} s."
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT).write_text(markdown_report(scenario, summaries, sections, heading, PLOT))
    write_plot(out / PLOT, scenario, results)
    data = {
        "scenario": scenario.source,
        "elapsed_seconds": elapsed,
        "target_old_share": target_series(scenario),
        "policies": [
            {"summary": dataclasses.asdict(summary), "series": _series(result)}
            for summary, result in zip(summaries, results, strict=True)
        ],
    }
    (out / RESULTS).write_text(json.dumps(data, indent=1) + "\n")
    return summaries, sections


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="migproxy lab",
        description="Reproduce a VIP migration on loopback: a GSLB DNS server, a migproxy per "
        "VIP, a fleet of keep-alive clients; compare close policies.",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--quick", action="store_true", help=f"the reduced scenario ({SCENARIOS}/quick.toml)"
    )
    which.add_argument(
        "--scenario", type=Path, help=f"a scenario file (default {SCENARIOS}/full.toml)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path(DEFAULT_OUT), help=f"output directory ({DEFAULT_OUT})"
    )
    parser.add_argument("--check", action="store_true", help="validate the scenario and exit")
    return parser


def scenario_path(args: argparse.Namespace) -> Path:
    if args.scenario is not None:
        return Path(args.scenario)
    return SCENARIOS / ("quick.toml" if args.quick else "full.toml")


def run_lab(scenario: Scenario, out_dir: Path, out: TextIO) -> list[PolicySummary]:
    """Run `scenario` and write its outputs; the API the CLI and the benchmark share.

    Raises:
        LabError: the lab cannot run here (addresses, ports, a proxy that will not start).
        KeyboardInterrupt: Ctrl-C, after everything started was stopped.
    """
    require_matplotlib()
    specs = build_fleet(scenario)
    check_addresses([OLD_VIP, NEW_VIP, LOCAL, specs[0].source, source_address(len(specs) - 1)])
    print(
        f"migproxy lab: {scenario.source}: {len(scenario.policies)} policies, "
        f"{scenario.clients} clients each, {scenario.duration} s "
        f"{'at once' if scenario.concurrent else 'each, in turn'}\n{PROGRESS_LEGEND}",
        file=out,
        flush=True,
    )
    started = time.monotonic()

    def announce(name: str) -> None:
        print(f"-- policy {name}", file=out, flush=True)

    # SIGTERM stops the lab as Ctrl-C does: asyncio.Runner turns SIGINT into a cancellation
    # of the run, whose clean-up stops everything it started. Started in the background by a
    # shell, the lab inherits SIGINT ignored, and the Runner would leave it so: SIGTERM too
    # would then be ignored.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    previous = signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        with asyncio.Runner(loop_factory=loop_factory(True)) as runner:
            results = runner.run(run_scenario(scenario, specs, Progress(scenario, out), announce))
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    summaries, sections = write_outputs(
        out_dir, scenario, specs, results, time.monotonic() - started
    )
    print("", *summary_rows(summaries), "", sep="\n", file=out)
    for section in sections:
        for line in model_lines(section, scenario.epsilon):
            print(line, file=out)
    return summaries


def main(argv: Sequence[str]) -> int:
    """`migproxy lab`."""
    args = _parser().parse_args(argv)
    path = scenario_path(args)
    try:
        scenario = load_scenario(path)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 1
    if args.check:
        print(f"{path}: ok")
        return 0
    try:
        run_lab(scenario, args.out, sys.stdout)
    except LabError as err:
        print(f"migproxy lab: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nmigproxy lab: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    finally:
        kill_leftovers()
    print(f"report: {args.out / REPORT}\nplot:   {args.out / PLOT}\ndata:   {args.out / RESULTS}")
    return 0
