"""Policy benchmark: what Policy documents add to `cplane validate` of a 100,000-row taxonomy.

    .venv/bin/python bench/policy_bench.py [--rows 100000] [--repeat 3]

The tree is bench/genconfig.py's (the repo's config with generated industries). The reference is
the same tree without any Policy, validated in the same run; then with the shipped policies
(config/policies/, none of which reads the taxonomy), plus a taxonomy policy that reads every
sector ("every sector has a display name and seed keywords"), plus one that reads every seed
keyword. Each is the best of --repeat runs of validate_all (base and every environment), interleaved
so that the machine's load hits all of them alike. Prints a Markdown table; the target is the
taxonomy-sector line at most 1.10x the reference.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from genconfig import generate  # noqa: E402

from control_plane.reconcile.validation import validate_all  # noqa: E402

SECTOR_POLICY = """\
apiVersion: cplane/v1
kind: Policy
metadata:
  name: taxonomy-sectors
spec:
  match: {kinds: [Industry]}
  validations:
    - expression: object.spec.sectors.all(s, s.displayName != "" && size(s.seedKeywords) > 0)
      message: every sector has a display name and seed keywords
"""

KEYWORD_POLICY = """\
apiVersion: cplane/v1
kind: Policy
metadata:
  name: taxonomy-keywords
spec:
  match: {kinds: [Industry]}
  validations:
    - expression: object.spec.sectors.all(s, s.seedKeywords.all(k, k.keyword != "" && k.searchVolume != 0))
      message: every seed keyword has text and a search volume other than 0
"""


def trees(base: Path, rows: int) -> dict[str, Path]:
    generate(base / "shipped", rows)
    out = {"no policies (reference)": base / "none", "shipped policies": base / "shipped",
           "shipped + taxonomy (every sector)": base / "sectors",
           "shipped + taxonomy (every seed keyword)": base / "keywords"}
    for path in out.values():
        if path != base / "shipped":
            shutil.copytree(base / "shipped", path)
    shutil.rmtree(out["no policies (reference)"] / "policies")
    (out["shipped + taxonomy (every sector)"] / "policies" / "taxonomy.yaml").write_text(SECTOR_POLICY)
    (out["shipped + taxonomy (every seed keyword)"] / "policies" / "taxonomy.yaml").write_text(KEYWORD_POLICY)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = trees(Path(tmp), args.rows)
        best = {label: float("inf") for label in paths}
        for _ in range(args.repeat):
            for label, path in paths.items():
                started = time.perf_counter()
                config = validate_all(path)
                elapsed = time.perf_counter() - started
                if not config.ok:
                    raise SystemExit(f"{label}: invalid: {config.issues[:3]}")
                best[label] = min(best[label], elapsed)
    reference = best["no policies (reference)"]
    print(f"| {args.rows:,}-row taxonomy: validate | seconds (best of {args.repeat}) | ÷ reference |")
    print("| --- | ---: | ---: |")
    for label, seconds in best.items():
        print(f"| {label} | {seconds:.2f} | {seconds / reference:.2f}x |")


if __name__ == "__main__":
    main()
