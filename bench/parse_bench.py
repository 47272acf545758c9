"""Parse benchmark: a ~100,000-row taxonomy, loaded by the config loader and by other parsers.

    .venv/bin/python bench/parse_bench.py [--industries 20 --sectors 50 --keywords 100] [--repeat 3]

Generates ``kind: Industry`` documents (one per industry, sectors and seed keywords nested in the
spec), writes them to a temporary file and prints the best time of each parser.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml
import yaml_rs
from ruamel.yaml import YAML

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from control_plane.config import loader  # noqa: E402


def generate(industries: int, sectors: int, keywords: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    out: list[str] = ["# yaml-language-server: $schema=../../schemas/Industry.json\n"]
    for i in range(industries):
        out.append(
            "---\n"
            "apiVersion: cplane/v1\n"
            "kind: Industry\n"
            "metadata:\n"
            f"  name: industry-{i:02d}\n"
            "  labels: {}\n"
            "  annotations: {}\n"
            "spec:\n"
            f"  displayName: Industry {i}\n"
            "  sectors:\n"
        )
        for s in range(sectors):
            out.append(
                f"    - name: sector-{i:02d}-{s:02d}\n      displayName: Sector {s} of industry {i}\n      seedKeywords:\n"
            )
            for k in range(keywords):
                out.append(
                    f"        - keyword: keyword {i} {s} {k} {rng.choice(('best', 'cheap', 'near me', 'how to'))}\n"
                    f"          searchVolume: {rng.randint(10, 200_000)}\n"
                    f"          difficulty: {rng.randint(0, 100)}\n"
                )
    return "".join(out)


def best_of(repeat: int, fn: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--industries", type=int, default=20)
    parser.add_argument("--sectors", type=int, default=50)
    parser.add_argument("--keywords", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-ruamel", action="store_true", help="ruamel round-trip is the slow one")
    args = parser.parse_args()

    text = generate(args.industries, args.sectors, args.keywords)
    rows = args.industries * args.sectors * args.keywords
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "taxonomy.yaml"
        path.write_text(text, encoding="utf-8")
        print(
            f"taxonomy: {args.industries} industries x {args.sectors} sectors x {args.keywords} keywords "
            f"= {rows:,} keyword rows, {len(text) / 1e6:.1f} MB, {text.count(chr(10)):,} lines"
        )

        def loader_fast():
            result = loader.load_file(path)
            assert not result.errors and len(result.documents) == args.industries, result.errors[:3]
            return result

        def raw_yaml_rs():
            return yaml_rs.loads(text, parse_datetime=False)

        def pyyaml_c():
            return list(yaml.load_all(text, Loader=yaml.CSafeLoader))

        def ruamel_rt():
            rt = YAML(typ="rt")
            rt.version = (1, 2)
            return list(rt.load_all(text))

        def ruamel_compose():  # what the error path costs on a broken file of this size
            return list(loader._ruamel().compose_all(text))

        runs: list[tuple[str, Callable[[], object], int]] = [
            ("loader.load_file (yaml-rs fast path)", loader_fast, args.repeat),
            ("yaml_rs.loads alone", raw_yaml_rs, args.repeat),
            ("PyYAML CSafeLoader", pyyaml_c, args.repeat),
        ]
        if not args.skip_ruamel:
            runs += [
                ("ruamel.yaml rt load_all (locate's parse)", ruamel_rt, 1),
                ("ruamel.yaml compose_all (error path)", ruamel_compose, 1),
            ]

        results: list[tuple[str, float]] = []
        reference = None
        for name, fn, repeat in runs:
            seconds, out = best_of(repeat, fn)
            results.append((name, seconds))
            if name.startswith("loader"):
                reference = [d.data for d in out.documents]
            elif name.startswith(("yaml_rs", "PyYAML")):
                assert out == reference, f"{name} disagrees with the loader"
            print(f"  ... {name}: {seconds:.3f}s", file=sys.stderr)

        # locate(): first call parses one document's slice with ruamel, later calls hit the cache
        docs = loader.load_file(path).documents
        target = ("spec", "sectors", args.sectors - 1, "seedKeywords", args.keywords - 1, "difficulty")
        loader.clear_locate_cache()
        for label in ("locate() first call (parses 1 document)", "locate() next call (cached)"):
            started = time.perf_counter()
            where = loader.locate(docs[-1], target)
            results.append((label, time.perf_counter() - started))
        print(f"  ... locate -> line {where[0]}, col {where[1]}", file=sys.stderr)

        base = results[0][1]
        width = max(len(n) for n, _ in results)
        print(f"\n{'parser'.ljust(width)}  {'seconds':>8}  {'rows/s':>10}  {'vs loader':>9}")
        for name, seconds in results:
            print(f"{name.ljust(width)}  {seconds:8.3f}  {rows / seconds:10,.0f}  {seconds / base:8.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
