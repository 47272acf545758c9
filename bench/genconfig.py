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


def industry_yaml(i: int, sectors: int, keywords: int, rng: random.Random, variant: int = 0) -> str:
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
                f"          searchVolume: {volume + variant if (k % 100) == 0 else volume}",
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


def generate(out: Path, rows: int, variant: int = 0, seed: int = 7) -> Path:
    """Write a config tree with `rows` seed keywords; variant>0 changes 1% of them."""
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
        (out / "industries" / f"industry-{i:03d}.yaml").write_text(
            industry_yaml(i, SECTORS_PER_INDUSTRY, keywords, rng, variant)
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("bench/out/config"))
    parser.add_argument("--variant", type=int, default=0)
    args = parser.parse_args()
    generate(args.out, args.rows, args.variant)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
