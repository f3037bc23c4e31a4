"""How long ``musictranslate --help`` takes, next to the cost of importing torch.

``--help`` and ``--version`` should answer at once: the CLI imports torch and librosa only inside
the commands that need them. This prints wall times (median of several runs, in fresh processes);
it never asserts a time, because timings on a shared 2-core machine are noise for a test.

    python bench/cli_startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def wall_seconds(command: list[str], runs: int) -> tuple[float, float]:
    """Median and best wall time of ``command`` over ``runs`` fresh processes (after one warm-up)."""
    subprocess.run(command, capture_output=True, check=True)  # warm the file cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    script = Path(sys.executable).with_name("musictranslate")
    console = [str(script)] if script.exists() else [shutil.which("musictranslate") or "musictranslate"]
    cases = {
        "musictranslate --help": [*console, "--help"],
        "musictranslate translate --help": [*console, "translate", "--help"],
        "python -m musictranslate --version": [sys.executable, "-m", "musictranslate", "--version"],
        "python -c pass (interpreter alone)": [sys.executable, "-c", "pass"],
        "python -c 'import torch' (for scale)": [sys.executable, "-c", "import torch"],
    }
    print(f"cli startup, {runs} runs each (median / best wall seconds)")
    for name, command in cases.items():
        median, best = wall_seconds(command, runs)
        print(f"  {name:<40} {median:6.3f} / {best:6.3f}")


if __name__ == "__main__":
    main()
