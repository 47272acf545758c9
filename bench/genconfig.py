"""Synthetic config trees of N rows, shaped like a large taxonomy (mostly seed keywords).

The repo's config is copied (so the tree is valid and complete) and its industries are replaced by
generated ones: industries × 50 sectors × keywords, with N seed-keyword rows in all. The repo's
industries stay as names without sectors, since prompt variants refer to them.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SECTORS_PER_INDUSTRY = 50
KEYWORDS_PER_SECTOR = 100
INTENTS = ("informational", "commercial", "transactional", "navigational")


def industry_yaml(i: int, sectors: int, keywords: int, rng: random.Random, variant: int = 0, every: int = 100) -> str:
    """One industry file; `variant` is added to the search volume of every `every`-th keyword."""
    lines = [
        "# yaml-language-server: $schema=../../schemas/Industry.json",
        "apiVersion: cplane/v1",
        "kind: Industry",
        "metadata:",
        f"  name: industry-{i:03d}",
        "spec:",
        f"  displayName: Industry {i}",
        f"  description: Generated industry {i}",
        "  sectors:",
    ]
    for s in range(sectors):
        lines += [
            f"    - name: sector-{s:03d}",
            f"      displayName: Sector {i}.{s}",
            "      seedKeywords:",
        ]
        for k in range(keywords):
            volume = rng.randint(10, 90000)
            lines += [
                f"        - keyword: keyword {i} {s} {k}",
                f"          searchVolume: {volume + variant if (k % every) == 0 else volume}",
                f"          difficulty: {rng.randint(0, 100)}",
                f"          cpc: {rng.randint(5, 2000) / 100}",
                f"          intent: {INTENTS[k % 4]}",
            ]
    return "\n".join(lines) + "\n"


def _stub(path: Path) -> tuple[str, str]:
    """The industry of a repo file, without its sectors."""
    source = path.read_text()
    name = re.search(r"^  name: (.+)$", source, re.M).group(1).strip()
    display = re.search(r"^  displayName: (.+)$", source, re.M).group(1).strip()
    return name, "\n".join(["apiVersion: cplane/v1", "kind: Industry", "metadata:", f"  name: {name}", "spec:",
                             f"  displayName: {display}", "  sectors: []"]) + "\n"


def generate(out: Path, rows: int, variant: int = 0, seed: int = 7, one_file: int = 0) -> Path:
    """Write a config tree with `rows` seed keywords; variant>0 changes 1% of them, spread over every
    industry file (every 100th keyword of each). one_file>0, on top of that: 1% of all the keywords
    (rows // 100, at most the file's) edited in the first industry file only, by `one_file` more than
    the spread variant (the issue's "1,000 rows in one table", all in one file of the taxonomy)."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(REPO / "config", out)
    kept = [_stub(path) for path in sorted((out / "industries").glob("*.yaml"))]
    shutil.rmtree(out / "industries")
    (out / "industries").mkdir()
    for name, text in kept:
        (out / "industries" / f"{name}.yaml").write_text(text)
    per_industry = SECTORS_PER_INDUSTRY * KEYWORDS_PER_SECTOR
    industries = max(1, rows // per_industry)
    keywords = max(1, rows // (industries * SECTORS_PER_INDUSTRY))
    for i in range(industries):
        rng = random.Random(seed * 1000 + i)
        if one_file and i == 0:
            # Every `every`-th keyword of the file: rows // 100 of them (of 5,000 per file: every 5th
            # at 100,000 rows, so 1,000), their volume moved away from the spread variant's.
            every = max(1, (SECTORS_PER_INDUSTRY * keywords) // max(1, rows // 100))
            # (`every` divides 100, so the spread variant's edits of this file are among these.)
            text = industry_yaml(i, SECTORS_PER_INDUSTRY, keywords, rng, variant + one_file, every)
        else:
            text = industry_yaml(i, SECTORS_PER_INDUSTRY, keywords, rng, variant)
        (out / "industries" / f"industry-{i:03d}.yaml").write_text(text)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("bench/out/config"))
    parser.add_argument("--variant", type=int, default=0)
    parser.add_argument("--one-file", type=int, default=0)
    args = parser.parse_args()
    generate(args.out, args.rows, args.variant, one_file=args.one_file)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
