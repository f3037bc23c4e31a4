"""Run every benchmark, print the tables and write them as JSON: ``python -m bench``.

python -m bench                 # everything, a few minutes
python -m bench --quick         # a smoke run of every benchmark, under a minute
python -m bench --only generation limits --json out/gen.json
python -m bench --only live translate   # issue 23: batch-1 step, live run, 8/60/240 s files
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from . import Stopwatch, generation, limits, live, machine, training, translate

NAMES = ("limits", "generation", "live", "training", "translate", "cli_startup")
CLI_STARTUP = Path(__file__).with_name("cli_startup.py")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Fewer, shorter measurements.")
    parser.add_argument("--only", nargs="+", choices=NAMES, default=NAMES, help="Benchmarks to run.")
    parser.add_argument("--json", type=Path, default=Path("out/bench.json"), help="Where to write.")
    args = parser.parse_args()
    clock = Stopwatch()
    report: dict = {"machine": machine(), "quick": args.quick, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(f"machine: {report['machine']}")
    if {"limits", "generation", "live"} & set(args.only):
        report["limits"] = limits.run(args.quick)
    if "generation" in args.only:
        report["generation"] = generation.run(args.quick, report["limits"])
    if "live" in args.only:
        report["live"] = live.run(args.quick, report["limits"])
    if "training" in args.only:
        report["training"] = training.run(args.quick)
    if "translate" in args.only:
        report["translate"] = translate.run(args.quick)
    if "cli_startup" in args.only and CLI_STARTUP.exists():
        runs = "2" if args.quick else "5"
        subprocess.run([sys.executable, str(CLI_STARTUP), "--runs", runs], check=False)
    report["load_average_after"] = machine()["load_average"]
    report["seconds"] = clock.seconds
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {args.json} in {clock.seconds:.0f} s (load average {report['load_average_after']})")


if __name__ == "__main__":
    main()
