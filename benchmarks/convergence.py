"""Convergence benchmark: the migration lab's full scenario (config/lab/full.toml).

100 keep-alive clients (1, 5 and 20 requests/s; DNS caches of 0 s, 10 s and 60 s) are moved
from the old VIP to the new one, 100:0 -> 50:50 -> 0:100, once per close policy, through real
``migproxy run`` processes on 127.0.0.2 and 127.0.0.3 and the lab's GSLB DNS server (see
``migproxy lab --help`` and README "The migration lab"). For each policy and step it measures
the time until the old VIP's traffic share is within the DNS split's tolerance, the reconnects
per client moved and the client errors, and compares them with the model.

Usage (from the repository root)::

    .venv/bin/python benchmarks/convergence.py
    .venv/bin/python benchmarks/convergence.py --scenario config/lab/quick.toml \\
        --out benchmarks/results/convergence

The report, plot and raw results go to ``--out`` (benchmarks/results/convergence/); the results
table is printed and also written to ``--out``/table.md, ready for the README. Exit status 1
when the lab cannot run or a policy had client errors. Every process it starts is stopped,
also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from migproxy.config import ConfigError
from migproxy.lab.cli import SCENARIOS, run_lab
from migproxy.lab.ports import LabError
from migproxy.lab.proxies import kill_leftovers
from migproxy.lab.report import summary_rows
from migproxy.lab.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", type=Path, default=SCENARIOS / "full.toml")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/convergence")
    args = parser.parse_args()
    try:
        scenario = load_scenario(args.scenario)
        summaries = run_lab(scenario, args.out, sys.stdout)
    except (ConfigError, LabError) as err:
        print(err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        kill_leftovers()
    table = "\n".join(summary_rows(summaries)) + "\n"
    (args.out / "table.md").write_text(table)
    print(f"\nreport: {args.out / 'report.md'}\ntable:  {args.out / 'table.md'}")
    return 1 if any(summary.errors for summary in summaries) else 0


if __name__ == "__main__":
    sys.exit(main())
