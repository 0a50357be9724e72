"""Instructions per proxied exchange, counted by callgrind: a perf signal that does not drift.

Wall-clock benchmarks on a shared machine move by ±10% from run to run; the number of
instructions the interpreter executes for one exchange (benchmarks/datapath_bench.py, no
sockets) is repeatable to about 1%, so it is what a change to the data path is judged by before
bench_proxy.py confirms it. The count is the difference between two runs of different lengths,
divided by the difference in exchanges, so start-up cost cancels out.

Usage: .venv/bin/python benchmarks/datapath_instructions.py [--ratio 0.0] [--short 2000]
       [--long 12000]   (needs valgrind: apt-get install -y valgrind)
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_COLLECTED = re.compile(r"Collected : (\d+)")


def instructions(exchanges: int, ratio: float) -> int:
    """Instructions callgrind counts for a whole run of `exchanges` exchanges."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (apt-get install -y valgrind)")
    code = (
        "import sys; sys.path.insert(0, '.');"
        f"from benchmarks.datapath_bench import run; run({exchanges}, {ratio})"
    )
    result = subprocess.run(
        [
            valgrind,
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            code,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    match = _COLLECTED.search(result.stderr)
    if match is None:
        raise SystemExit(f"no instruction count in callgrind's output:\n{result.stderr[-2000:]}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ratio", type=float, default=0.0)
    parser.add_argument("--short", type=int, default=2000)
    parser.add_argument("--long", type=int, default=12000)
    args = parser.parse_args()
    short = instructions(args.short, args.ratio)
    long = instructions(args.long, args.ratio)
    per_exchange = (long - short) / (args.long - args.short)
    print(f"ratio {args.ratio}: {per_exchange:,.0f} instructions per exchange")


if __name__ == "__main__":
    main()
