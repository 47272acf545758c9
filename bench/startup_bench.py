"""Start-up benchmark: `cplane --help`, `cplane --version` and `cplane validate` as whole processes.

    .venv/bin/python bench/startup_bench.py [--runs 15] [--config config]

Each command is started as a new process, in turn with a bare `python -c pass` (the yardstick) in
the same run, so that a busy machine slows both alike. Wall time is a monotonic clock around the
process; CPU is the child's own user + system time from the kernel (os.wait4), which a busy
machine moves much less. Targets: `--help` < 0.25 s, `validate` < 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"cplane --help": 0.25, "cplane validate": 0.5}


def cplane() -> list[str]:
    exe = Path(sys.executable).with_name("cplane")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "control_plane"]


def run_once(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, cpu seconds) of one whole process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            cwd=REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--config", default=str(REPO / "config"))
    args = parser.parse_args()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "cplane --help": [*cplane(), "--help"],
        "cplane --version": [*cplane(), "--version"],
        "cplane validate": [*cplane(), "validate", "--config", args.config],
    }
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for argv in commands.values():  # warm-up: page cache, .pyc files
        run_once(argv)
    for _ in range(args.runs):
        for name, argv in commands.items():  # interleaved: each round sees the same machine
            samples[name].append(run_once(argv))

    bare = statistics.median(w for w, _ in samples["python -c pass"])
    print(f"{args.runs} runs each, interleaved; seconds; os.cpu_count()={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'command':<18} {'wall min':>9} {'wall med':>9} {'cpu min':>8} {'cpu med':>8} "
          f"{'med - bare':>10} {'target':>7}")
    for name, runs in samples.items():
        walls = [w for w, _ in runs]
        cpus = [c for _, c in runs]
        target = TARGETS.get(name)
        print(f"{name:<18} {min(walls):>9.3f} {statistics.median(walls):>9.3f} {min(cpus):>8.3f} "
              f"{statistics.median(cpus):>8.3f} {statistics.median(walls) - bare:>10.3f} "
              f"{'< ' + str(target) if target else '':>7}")


if __name__ == "__main__":
    main()
