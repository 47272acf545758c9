"""Controller benchmark on PostgreSQL: cplane against a naive loader and the floor, same rows, one run.

For N seed-keyword rows (a large taxonomy, see genconfig.py) it measures: validate; the first
apply to an empty database; a no-change plan; a no-op apply (and that it writes no rows); a 1%
change plan + apply. References on the same rows: a naive row-by-row loader (select, then insert,
per row, as fixture loaders do) and the floor (parse with the fastest parser, then COPY the rows
in with psycopg; for plans, parse + one SELECT).

    .venv/bin/python bench/controller_bench.py --rows 10000 100000 --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import yaml_rs
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from genconfig import generate  # noqa: E402

from control_plane.config.validate import load_config  # noqa: E402
from control_plane.db.engine import make_engine, upgrade  # noqa: E402
from control_plane.reconcile.controller import apply_plan, make_plan  # noqa: E402

ADMIN = os.environ.get("CPLANE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


class Database:
    def __init__(self):
        self.name = f"cplane_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self.url = ADMIN.rsplit("/", 1)[0] + "/" + self.name
        self.engine = make_engine(self.url)
        upgrade(self.engine)

    def drop(self):
        self.engine.dispose()
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))

    def tuples_written(self) -> int:
        with psycopg.connect(self.url) as conn:
            conn.execute("SELECT pg_stat_force_next_flush()")
            return conn.execute(
                "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"
            ).fetchone()[0]


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def parse_taxonomy(config: Path):
    """Fastest path: yaml-rs, flattened to industry, sector and keyword tuples."""
    industries, sectors, keywords = [], [], []
    for path in sorted((config / "industries").glob("*.yaml")):
        doc = yaml_rs.loads(path.read_text(), parse_datetime=False)
        slug = doc["metadata"]["name"]
        industries.append((slug, doc["spec"]["displayName"]))
        for sector in doc["spec"]["sectors"]:
            sectors.append((slug, sector["name"], sector["displayName"]))
            for kw in sector["seedKeywords"]:
                keywords.append((slug, sector["name"], kw["keyword"], kw.get("searchVolume"), kw.get("difficulty"),
                                 kw.get("cpc"), kw.get("intent", "informational")))
    return industries, sectors, keywords


def floor_load(url: str, config: Path) -> None:
    industries, sectors, keywords = parse_taxonomy(config)
    with psycopg.connect(url) as conn:
        with conn.cursor().copy("COPY industries (slug, name, description, sort_order, is_active) FROM STDIN") as copy:
            for slug, name in industries:
                copy.write_row((slug, name, "", 0, True))
        ind = dict(conn.execute("SELECT slug, id FROM industries").fetchall())
        with conn.cursor().copy(
            "COPY industry_sectors (industry_id, slug, name, description, is_active) FROM STDIN"
        ) as copy:
            for i, s, n in sectors:
                copy.write_row((ind[i], s, n, "", True))
        sec = {(i, s): sid for sid, i, s in conn.execute(
            "SELECT s.id, i.slug, s.slug FROM industry_sectors s JOIN industries i ON i.id = s.industry_id").fetchall()}
        with conn.cursor().copy(
            "COPY seed_keywords (industry_id, sector_id, keyword, search_volume, difficulty, cpc, intent, is_active) FROM STDIN"
        ) as copy:
            for i, s, k, v, d, c, intent in keywords:
                copy.write_row((ind[i], sec[(i, s)], k, v, d, c, intent, True))


def floor_plan(url: str, config: Path) -> None:
    parse_taxonomy(config)
    with psycopg.connect(url) as conn:
        conn.execute("SELECT id, industry_id, sector_id, keyword, search_volume, difficulty, cpc, intent, is_active "
                     "FROM seed_keywords WHERE account_id IS NULL").fetchall()


def naive_load(url: str, config: Path) -> None:
    """What fixture loaders do: through the ORM, look each row up by its key, then insert it (flush for its id)."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from control_plane.db.models import Industry, IndustrySector, SeedKeyword

    industries, sectors, keywords = parse_taxonomy(config)
    engine = make_engine(url)
    with Session(engine) as session, session.begin():
        ind, sec = {}, {}
        for slug, name in industries:
            obj = session.execute(select(Industry).where(Industry.slug == slug)).scalar_one_or_none()
            if obj is None:
                obj = Industry(slug=slug, name=name)
                session.add(obj)
                session.flush()
            ind[slug] = obj.id
        for i, s, name in sectors:
            obj = session.execute(
                select(IndustrySector).where(IndustrySector.industry_id == ind[i], IndustrySector.slug == s)
            ).scalar_one_or_none()
            if obj is None:
                obj = IndustrySector(industry_id=ind[i], slug=s, name=name)
                session.add(obj)
                session.flush()
            sec[(i, s)] = obj.id
        for i, s, k, v, d, c, intent in keywords:
            obj = session.execute(
                select(SeedKeyword).where(SeedKeyword.sector_id == sec[(i, s)], SeedKeyword.keyword == k,
                                          SeedKeyword.account_id.is_(None))
            ).scalar_one_or_none()
            if obj is None:
                obj = SeedKeyword(industry_id=ind[i], sector_id=sec[(i, s)], keyword=k)
                session.add(obj)
            obj.search_volume, obj.difficulty, obj.cpc, obj.intent = v, d, c, intent
            session.flush()
    engine.dispose()


def bench(rows: int, work: Path) -> list[tuple[str, float, float | None, float | None, str]]:
    config = generate(work / f"config-{rows}", rows)
    changed = generate(work / f"config-{rows}-changed", rows, variant=1)
    env = None
    results = []

    t_validate, cfg = timed(lambda: load_config(config))
    assert cfg.ok, cfg.issues[:3]

    db = Database()
    floor_db = Database()
    naive_db = Database()
    try:
        t_first, _ = timed(lambda: apply_plan(db.engine, make_plan(db.engine, config, environment=env).plan,
                                              environment=env, actor="bench"))
        t_floor_load, _ = timed(lambda: floor_load(floor_db.url, config))
        t_naive, _ = timed(lambda: naive_load(naive_db.url, config))
        t_plan, plan = timed(lambda: make_plan(db.engine, config, environment=env).plan)
        assert not plan.changes, plan.changes[:3]
        t_floor_plan, _ = timed(lambda: floor_plan(db.url, config))
        before = db.tuples_written()
        t_noop, result = timed(lambda: apply_plan(db.engine, make_plan(db.engine, config).plan, environment=env, actor="bench"))
        after = db.tuples_written()
        assert not result.applied
        t_change_plan, plan_1 = timed(lambda: make_plan(db.engine, changed, environment=env).plan)
        t_change_apply, _ = timed(lambda: apply_plan(db.engine, plan_1, environment=env, actor="bench"))
        n_changed = len(plan_1.changes)
    finally:
        for d in (db, floor_db, naive_db):
            d.drop()

    def ratio(a, b):
        return a / b if b else None

    results.append(("validate", t_validate, None, None, f"{rows} rows"))
    results.append(("first apply (empty database)", t_first, ratio(t_naive, t_first), ratio(t_first, t_floor_load),
                    f"naive {t_naive:.2f} s, floor {t_floor_load:.2f} s"))
    results.append(("no-change plan", t_plan, None, ratio(t_plan, t_floor_plan), f"floor {t_floor_plan:.2f} s"))
    results.append(("no-op apply", t_noop, None, None, f"rows written: {after - before}"))
    results.append((f"1% change plan + apply ({n_changed} changes)", t_change_plan + t_change_apply, None, None,
                    f"plan {t_change_plan:.2f} s + apply {t_change_apply:.2f} s"))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--write", type=Path, help="Markdown file to write the table to.")
    args = parser.parse_args()
    os.environ.setdefault("CPLANE_SECRET_KEY", "bench")
    lines = [
        "| rows | step | seconds | naive ÷ cplane | cplane ÷ floor | notes |",
        "| ---: | --- | ---: | ---: | ---: | --- |",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            for step, seconds, vs_naive, vs_floor, note in bench(rows, Path(tmp)):
                lines.append(
                    f"| {rows:,} | {step} | {seconds:.2f} | {'' if vs_naive is None else f'{vs_naive:.1f}x'} | "
                    f"{'' if vs_floor is None else f'{vs_floor:.2f}x'} | {note} |"
                )
                print(lines[-1], flush=True)
    table = "\n".join(lines)
    if args.write:
        args.write.write_text(
            "## Controller (`bench/controller_bench.py`)\n\n"
            f"PostgreSQL on this machine, {os.cpu_count()} cores. References measured in the same run on the same rows: "
            "naive = row-by-row select-then-insert; floor = yaml-rs parse + psycopg COPY (plans: parse + one SELECT).\n\n"
            + table + "\n"
        )
    print(table)


if __name__ == "__main__":
    main()
