"""The no-change plan and the no-op apply beside their floor, as whole processes, interleaved in one run.

A quicker companion of controller_bench.py (same database set-up, config generator, floor and
process timing) for the one row it watches closely: after a first apply, each round runs the floor
(parse the taxonomy with yaml-rs + SELECT the three tables), `cplane plan`, `cplane apply
--auto-approve` (the full plan is controller_bench.py's);
the figures are the minimum over the rounds, so a noisy neighbour costs rounds, not the ratio.

    .venv/bin/python bench/nochange_bench.py --rows 10000 100000 --repeat 7
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from controller_bench import CPLANE, Database, floor, generate, run  # noqa: E402


def bench(rows: int, work: Path, repeat: int) -> dict[str, tuple[float, float]]:
    config = generate(work / f"config-{rows}", rows)
    db = Database()
    try:
        common = ["--config", str(config), "--database-url", db.url]
        run([*CPLANE, "apply", "--auto-approve", *common])
        steps = {"floor": floor("plan", db.url, str(config)), "plan": [*CPLANE, "plan", *common],
                 "apply": [*CPLANE, "apply", "--auto-approve", *common]}
        runs: dict[str, list] = {name: [] for name in steps}
        for _ in range(repeat):
            for name, cmd in steps.items():
                result = run(cmd)
                if name != "floor":
                    assert "No changes." in result.stdout, result.stdout[-500:]
                runs[name].append(result)
        return {name: (min(r.seconds for r in rs), max(r.rss_mb for r in rs)) for name, rs in runs.items()}
    finally:
        db.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            r = bench(rows, Path(tmp), args.repeat)
            fl = r["floor"][0]
            print(f"{rows:>9,} rows: floor {fl:.3f} s ({r['floor'][1]:.0f} MB) | "
                  f"no-change plan {r['plan'][0]:.3f} s = {r['plan'][0] / fl:.2f}x ({r['plan'][1]:.0f} MB) | "
                  f"no-op apply {r['apply'][0]:.3f} s = {r['apply'][0] / fl:.2f}x ({r['apply'][1]:.0f} MB) "
                  f"[min of {args.repeat}; load {os.getloadavg()[0]:.1f}]", flush=True)


if __name__ == "__main__":
    main()
