"""Benchmark: cplane cleanup (batched executor) beside the floor, on PostgreSQL.

For each profile (`test-data`, `retention`) the same ~1,000,000 user rows are generated twice
(same seed, same clock) into a fresh database holding the repo's system config:
- the floor: hand-written `DELETE FROM t WHERE <predicate>` per table, in the same order, no batching;
- cplane: `control_plane.cleanup.execute` (5,000-row batches, each its own transaction, snapshot
  and verification of system data, audit record).
Both delete exactly the same rows (checked). Prints a markdown table and writes
bench/out/benchmarks-cleanup.md (summarised in docs/benchmarks.md).

    python bench/cleanup_bench.py [--rows 1000000] [--batch-size 5000] [--out bench/out/benchmarks-cleanup.md]

PostgreSQL: CPLANE_TEST_PG (default postgresql://postgres@127.0.0.1:5432/test), like the tests.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import delete, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import userdata  # noqa: E402
from control_plane.cleanup import build_plan, execute, load_manifest  # noqa: E402
from control_plane.db.engine import make_engine, upgrade  # noqa: E402
from control_plane.db.models.user import USER_TABLES  # noqa: E402

ADMIN_URL = os.environ.get("CPLANE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _server_url(dbname: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


def reset_user_data(engine) -> None:
    """Back to system data only, fast (TRUNCATE), between runs."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(USER_TABLES)} CASCADE"))
        conn.execute(text("DELETE FROM seed_keywords WHERE account_id IS NOT NULL"))
        conn.execute(text("DELETE FROM ai_integration_settings WHERE account_id IS NOT NULL"))


def prepare(engine, rows: int, now: datetime) -> float:
    reset_user_data(engine)
    started = time.perf_counter()
    userdata.generate(engine, rows, now=now, seed=42)
    elapsed = time.perf_counter() - started
    raw = engine.raw_connection()
    try:
        raw.driver_connection.autocommit = True
        raw.driver_connection.execute("VACUUM ANALYZE")
        raw.driver_connection.execute("CHECKPOINT")
    finally:
        raw.close()
    return elapsed


def floor(engine, manifest, profile: str, now: datetime) -> tuple[float, dict[str, int]]:
    """Hand-written DELETEs, same order and predicates, one statement per table, no batching."""
    plan = build_plan(engine, manifest, profile, now=now, count=False)
    schema = plan.schema  # the conditions are built over its tables
    deleted: dict[str, int] = {}
    started = time.perf_counter()
    for step in plan.steps:
        stmt = delete(schema.clause(step.table))
        where = plan.where(step)
        with engine.begin() as conn:
            deleted[step.table] = conn.execute(stmt.where(where) if where is not None else stmt).rowcount
    return time.perf_counter() - started, deleted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "benchmarks-cleanup.md"))
    args = parser.parse_args()

    dbname = f"cplane_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        server_version = conn.execute("SHOW server_version").fetchone()[0]
    engine = make_engine(_server_url(dbname))
    results = []
    try:
        upgrade(engine)
        from cryptography.fernet import Fernet

        os.environ.setdefault("CPLANE_SECRET_KEY", Fernet.generate_key().decode())
        from control_plane.reconcile.controller import apply_config

        apply_config(engine, REPO / "config", environment=None, actor="bench")
        userdata.ensure_system_data(engine)
        manifest = load_manifest(REPO / "config")
        now = datetime.now(UTC)
        for profile in ("test-data", "retention"):
            gen_s = prepare(engine, args.rows, now)
            user_rows = userdata.user_row_count(engine)
            floor_s, floor_rows = floor(engine, manifest, profile, now)
            print(f"{profile}: generated {user_rows:,} user rows in {gen_s:.1f}s; floor {floor_s:.2f}s", file=sys.stderr)

            prepare(engine, args.rows, now)
            result = execute(engine, manifest, profile, batch_size=args.batch_size, now=now, actor="bench")
            if result.rows_deleted != floor_rows:
                diff = {t: (floor_rows.get(t), result.rows_deleted.get(t))
                        for t in set(floor_rows) | set(result.rows_deleted)
                        if floor_rows.get(t) != result.rows_deleted.get(t)}
                print(f"error: {profile}: cplane and the floor deleted different rows: {diff}", file=sys.stderr)
                return 1
            batches = sorted(result.batch_times)
            p99 = batches[int(len(batches) * 0.99) - 1] if batches else 0.0
            print(f"{profile}: cplane {result.elapsed_s:.2f}s, {result.batches} batches, longest "
                  f"{result.longest_batch_s * 1000:.0f} ms ({result.longest_batch_table})", file=sys.stderr)
            results.append({
                "profile": profile, "user_rows": user_rows, "deleted": result.total, "floor": floor_s,
                "cplane": result.elapsed_s, "ratio": result.elapsed_s / floor_s, "batches": result.batches,
                "longest": result.longest_batch_s, "longest_table": result.longest_batch_table, "p99": p99,
            })
    finally:
        engine.dispose()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))

    lines = [
        "| profile | user rows | rows deleted | floor (s) | cplane (s) | ratio | batches | longest batch | p99 batch |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| `{r['profile']}` | {r['user_rows']:,} | {r['deleted']:,} | {r['floor']:.2f} | {r['cplane']:.2f} | "
            f"{r['ratio']:.2f}x | {r['batches']} | {r['longest'] * 1000:.0f} ms ({r['longest_table']}) | "
            f"{r['p99'] * 1000:.0f} ms |"
        )
    table = "\n".join(lines)
    print(table)
    doc = f"""## Cleanup (issue 6)

`python bench/cleanup_bench.py --rows {args.rows} --batch-size {args.batch_size}` on PostgreSQL {server_version},
{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; run on {datetime.now(UTC):%Y-%m-%d}.

Data: `bench/userdata.py`, ~{args.rows:,} user rows (accounts with users, sites, sectors, keywords,
clusters, ideas, tasks, content, images, taxonomies, billing, credit transactions and usage logs, AI task
logs, sessions, reset tokens, task results, automation runs, sync events...) with `created_at` spread
uniformly over a year, loaded with COPY, then `VACUUM ANALYZE` and `CHECKPOINT`; the repo's system config
applied beside it. The same data (same seed and clock) is regenerated before each measured run.

- **floor**: one hand-written `DELETE FROM t WHERE <predicate>` per table, same order, no batching.
- **cplane**: `cplane cleanup apply` (`control_plane.cleanup.execute`): batches of {args.batch_size:,} rows, each its
  own transaction, walking the heap by block ranges (`ctid` range scans, so a batch never rescans the
  dead tuples of earlier ones), plus the snapshot and verification of every system table (count and
  md5 of the rows) and the audit record, all included in the time.

Both delete exactly the same rows (the benchmark checks it per table). Target: within 2x of the floor,
no batch longer than 1 s.

{table}
"""
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(doc)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
