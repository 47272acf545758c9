"""The desired side as whole processes: `cplane validate` and a full plan (`--no-fast-path`, SQLite),
without the per-file cache, with a cold one, a warm one, and after one industry file changed.

    .venv/bin/python bench/desired_bench.py --rows 10000 --repeat 2

Every number of one run is measured in that run (the machine is shared: compare ratios); peak RSS
is the child's (resource.getrusage). The database is applied once first, so the plan is the
no-change plan's full path, which reads the whole desired side.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from controller_bench import SECRETS  # noqa: E402
from genconfig import generate  # noqa: E402

CPLANE = [str(Path(sys.executable).with_name("cplane"))]


def run(cmd: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 2):
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}")


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one process, measured by a fresh wrapper (RUSAGE_CHILDREN is
    the peak over every child a process waited for, so each command gets its own)."""
    wrapper = [sys.executable, "-c",
               "import resource,subprocess,sys,time;t=time.perf_counter();"
               "r=subprocess.run(sys.argv[1:]).returncode;s=time.perf_counter()-t;"
               "print(s, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr);sys.exit(r)",
               *cmd]
    done = subprocess.run(wrapper, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 2):
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}")
    seconds, rss = done.stderr.strip().splitlines()[-1].split()
    return float(seconds), int(rss) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="desired-bench-"))
    try:
        config = generate(work / "config", args.rows)
        cache = work / ".cplane" / "cache"
        db = f"sqlite:///{work / 'bench.db'}"
        env = {**os.environ, **SECRETS, "CPLANE_SECRET_KEY": "bench", "NO_COLOR": "1"}
        off = {**env, "CPLANE_NO_CACHE": "1"}
        run([*CPLANE, "apply", "--auto-approve", "--config", str(config), "--database-url", db], off)
        commands = {
            "validate": [*CPLANE, "validate", "--config", str(config)],
            "plan --no-fast-path": [*CPLANE, "plan", "--no-fast-path", "--compact", "--config", str(config),
                                    "--database-url", db],
        }
        one = sorted((config / "industries").glob("industry-*.yaml"))[0]
        original = one.read_text()
        for name, cmd in commands.items():
            for rep in range(args.repeat):
                results = {}
                results["no cache"] = measure(cmd, off)
                shutil.rmtree(cache, ignore_errors=True)
                results["cold cache"] = measure(cmd, env)
                results["warm cache"] = measure(cmd, env)
                one.write_text(re.sub(r"searchVolume: (\d+)", lambda m, rep=rep: f"searchVolume: {int(m.group(1)) + 1 + rep}",
                                      original, count=1))
                results["one file changed"] = measure(cmd, env)
                one.write_text(original)
                line = ", ".join(f"{k} {s:.2f} s {m:.0f} MB" for k, (s, m) in results.items())
                print(f"{args.rows:,} rows, {name}: {line}; load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
