"""Controller benchmark on PostgreSQL: whole `cplane` processes beside their floors, same rows, one run.

For N seed-keyword rows (a large taxonomy, see genconfig.py) every step is a new process, timed
(wall clock) with its peak RSS (the kernel's ru_maxrss, from os.wait4):

- validate;
- first apply to an empty database (`cplane apply --auto-approve`), beside the floor (a process
  that parses the files with yaml-rs and COPYs the rows into the same, indexed tables) and the
  naive loader (ORM, select-then-insert per row; at 100,000 rows and below);
- no-change plan (`cplane plan`), beside the floor (a process that parses the same files with
  yaml-rs and SELECTs the three tables back), and the same plan with --no-fast-path;
- no-op apply (and the rows it wrote, from pg_stat_user_tables);
- 1% change: `cplane plan` + `cplane apply --auto-approve` of a tree with 1% of the keywords edited,
  twice: spread over every industry file (every 100th keyword of each), then all in one industry file
  (the issue's definition: one file of the taxonomy, 1,000 rows of one table at 100,000 rows);
  and the one-file change once more as a reviewed workflow: `cplane plan --out plan.json`, then
  `cplane apply plan.json` (which applies the saved plan without planning again), and the
  no-change plan right after it (the saved plan carries the fast path's record its apply leaves);
- one drifted row: a keyword edited by SQL, `cplane plan` (which must name it as drift);
- export (`cplane export`), beside the floor (SELECT the three tables, write the documents with
  yaml-rs).

    .venv/bin/python bench/controller_bench.py --rows 10000 100000 --write docs/benchmarks.md

`--steps apply,export` runs only those steps (default: all). The database every later step reads
is filled by `cplane apply` whenever one of them runs; the first apply is reported (with its floor
and the naive loader) only when `apply` is among the steps.
"""

from __future__ import annotations

import argparse
import compileall
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg
import yaml_rs
from psycopg import sql

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from genconfig import generate  # noqa: E402

ADMIN = os.environ.get("CPLANE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
CPLANE = [sys.executable, "-m", "control_plane"]
SECRETS = {"STRIPE_SECRET_KEY": "sk", "STRIPE_WEBHOOK_SECRET": "wh", "PAYPAL_CLIENT_SECRET": "pp",
           "PAYPAL_WEBHOOK_ID": "pw", "OPENAI_API_KEY": "oa", "RUNWARE_API_KEY": "rw"}
MARK_START = "<!-- controller_bench: start -->"
MARK_END = "<!-- controller_bench: end -->"


class Database:
    def __init__(self, migrate: bool = True):
        self.name = f"cplane_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self.url = ADMIN.rsplit("/", 1)[0] + "/" + self.name
        if migrate:
            run([*CPLANE, "db", "upgrade", "--database-url", self.url])

    def drop(self):
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))

    def execute(self, statement: str, *params) -> None:
        with psycopg.connect(self.url) as conn:
            conn.execute(statement, params)

    def tuples_written(self) -> int:
        with psycopg.connect(self.url) as conn:
            conn.execute("SELECT pg_stat_force_next_flush()")
            return conn.execute(
                "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"
            ).fetchone()[0]


class Run:
    def __init__(self, seconds: float, rss_mb: float, stdout: str, stderr: str):
        self.seconds, self.rss_mb, self.stdout, self.stderr = seconds, rss_mb, stdout, stderr


# Started first, as a bare interpreter: Linux carries the forking process's peak RSS into the child's
# ru_maxrss (across fork and exec), so every measured process is started from this small one.
SPAWNER = r"""
import json, os, subprocess, sys, time
for line in sys.stdin:
    r = json.loads(line)
    with open(r["out"], "wb") as out, open(r["err"], "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(r["cmd"], stdout=out, stderr=err, env=r["env"], cwd=r["cwd"])
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
    print(json.dumps([seconds, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)]), flush=True)
"""


_SPAWNER: subprocess.Popen | None = None


def run(cmd: list[str], *, ok=(0,)) -> Run:
    global _SPAWNER
    if _SPAWNER is None:
        _SPAWNER = subprocess.Popen([sys.executable, "-c", SPAWNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    text=True)
    with tempfile.TemporaryDirectory() as tmp:
        out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        env = {**os.environ, **SECRETS, "CPLANE_SECRET_KEY": "bench", "NO_COLOR": "1"}
        _SPAWNER.stdin.write(json.dumps({"cmd": cmd, "out": out, "err": err, "env": env, "cwd": str(REPO)}) + "\n")
        _SPAWNER.stdin.flush()
        seconds, rss, returncode = json.loads(_SPAWNER.stdout.readline())
        result = Run(seconds, rss, Path(out).read_text(), Path(err).read_text())
    if returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} exited {returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result


def best(cmd: list[str], repeat: int, **kwargs) -> Run:
    runs = [run(cmd, **kwargs) for _ in range(repeat)]
    return min(runs, key=lambda r: r.seconds)


# --- the floors, each run as its own process (`controller_bench.py --floor NAME URL CONFIG [OUT]`) --------


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


def _select_taxonomy(conn):
    industries = conn.execute("SELECT id, slug, name, description, sort_order, is_active FROM industries").fetchall()
    sectors = conn.execute("SELECT id, industry_id, slug, name, description, is_active FROM industry_sectors").fetchall()
    keywords = conn.execute("SELECT id, industry_id, sector_id, keyword, search_volume, difficulty, cpc, intent, "
                            "is_active FROM seed_keywords WHERE account_id IS NULL").fetchall()
    return industries, sectors, keywords


def floor_plan(url: str, config: Path) -> None:
    parse_taxonomy(config)
    with psycopg.connect(url) as conn:
        _select_taxonomy(conn)


def floor_export(url: str, out: Path) -> None:
    """SELECT the three tables and write one document per industry with yaml-rs."""
    with psycopg.connect(url) as conn:
        industries, sectors, keywords = _select_taxonomy(conn)
    by_sector: dict[int, list] = {}
    for _id, _ind, sector_id, keyword, volume, difficulty, cpc, intent, _active in keywords:
        by_sector.setdefault(sector_id, []).append({"keyword": keyword, "searchVolume": volume, "difficulty": difficulty,
                                                    "cpc": float(cpc) if cpc is not None else None, "intent": intent})
    by_industry: dict[int, list] = {}
    for sid, ind, slug, name, _desc, _active in sectors:
        by_industry.setdefault(ind, []).append({"name": slug, "displayName": name, "seedKeywords": by_sector.get(sid, [])})
    (out / "industries").mkdir(parents=True, exist_ok=True)
    for iid, slug, name, desc, _order, _active in industries:
        doc = {"apiVersion": "cplane/v1", "kind": "Industry", "metadata": {"name": slug},
               "spec": {"displayName": name, "description": desc, "sectors": by_industry.get(iid, [])}}
        (out / "industries" / f"{slug}.yaml").write_text(yaml_rs.dumps(doc))


def naive_load(url: str, config: Path) -> None:
    """What fixture loaders do: through the ORM, look each row up by its key, then insert it (flush for its id)."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from control_plane.db.engine import make_engine
    from control_plane.db.models import Industry, IndustrySector, SeedKeyword, metadata

    assert metadata  # a Session's flush sorts every mapped table: the user models too (db/models)

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


FLOORS = {"load": floor_load, "plan": floor_plan, "naive": naive_load}
STEPS = ("validate", "apply", "plan", "noop", "change", "drift", "export")


def floor(name: str, *args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--floor", name, *args]


# --- the benchmark --------------------------------------------------------------------------------


def bench(rows: int, work: Path, naive_max: int, repeat: int, steps: tuple[str, ...] = STEPS) -> list[tuple]:
    config = generate(work / f"config-{rows}", rows)
    changed = generate(work / f"config-{rows}-changed", rows, variant=1) if {"change", "drift"} & set(steps) else None
    # The same tree with rows // 100 keywords of one industry file edited on top (the 1% change:
    # "one file of a hundred-file taxonomy, or 1,000 rows in one table"), planned after `changed`.
    one_file = generate(work / f"config-{rows}-one-file", rows, variant=1, one_file=1) if "change" in steps else None
    results = []

    def ratio(a, b):
        return a / b if b else None

    def add(step, r: Run, vs_naive=None, vs_floor=None, note=""):
        results.append((step, r.seconds, r.rss_mb, vs_naive, vs_floor, note))
        print(f"  {rows:,} {step}: {r.seconds:.2f} s, {r.rss_mb:.0f} MB {note}", flush=True)

    db = Database()
    floor_db = Database() if "apply" in steps else None
    naive_db = Database() if rows <= naive_max and "apply" in steps else None
    try:
        common = ["--database-url", db.url]
        if "validate" in steps:
            add("validate", run([*CPLANE, "validate", "--config", str(config)]), note=f"{rows} rows")
        floor_load_run = run(floor("load", floor_db.url, str(config))) if floor_db else None
        naive = run(floor("naive", naive_db.url, str(config))) if naive_db else None
        if set(steps) - {"validate"}:
            first = run([*CPLANE, "apply", "--auto-approve", "--config", str(config), *common])
        if "apply" in steps:
            add("first apply (empty database)", first, ratio(naive.seconds, first.seconds) if naive else None,
                ratio(first.seconds, floor_load_run.seconds),
                (f"naive {naive.seconds:.2f} s, " if naive else "") + f"floor {floor_load_run.seconds:.2f} s "
                f"({floor_load_run.rss_mb:.0f} MB)")
        floor_plan_run = None
        if {"plan", "noop", "drift", "change"} & set(steps):
            floor_plan_run = best(floor("plan", db.url, str(config)), repeat)
        if "plan" in steps:
            _plans(add, ratio, config, common, repeat, floor_plan_run)
        if "noop" in steps:
            before = db.tuples_written()
            noop = best([*CPLANE, "apply", "--auto-approve", "--config", str(config), *common], repeat)
            written = db.tuples_written() - before
            add("no-op apply", noop, None, ratio(noop.seconds, floor_plan_run.seconds), f"rows written: {written}")
        applied = config
        if "change" in steps:
            _change(add, changed, common, first, "spread over every file")
            _change(add, one_file, common, first, "one file")
            # The same change again as a reviewed workflow: back to `changed` (not timed), then
            # `plan --out` and `apply` of the saved plan, which does not plan again.
            run([*CPLANE, "apply", "--auto-approve", "--config", str(changed), *common])
            _saved_change(add, one_file, work / f"plan-{rows}.json", common, first)
            # The saved plan carries the record its apply leaves (when nothing moved in between):
            # the next plan, as CI runs it after a merge, takes the fast path.
            after = run([*CPLANE, "plan", "--config", str(one_file), *common])
            assert "No changes." in after.stdout, after.stdout[-500:]
            add("no-change plan right after a saved plan's apply", after, None,
                ratio(after.seconds, floor_plan_run.seconds) if floor_plan_run else None,
                f"floor {floor_plan_run.seconds:.2f} s" if floor_plan_run else "")
            run([*CPLANE, "apply", "--auto-approve", "--config", str(one_file), *common])  # (a no-op)
            applied = one_file
        if "drift" in steps:
            # Against the config last applied (the one-file tree once the change step applied it):
            # the drift plan measures one SQL edit, not a config change beside it.
            _drift(add, ratio, db, applied, common, floor_plan_run)
        if "export" in steps:
            _export(add, ratio, work, rows, db, common, repeat)
    finally:
        for d in (db, floor_db, naive_db):
            if d is not None:
                d.drop()
    return results


def _plans(add, ratio, config, common, repeat, floor_plan_run) -> None:
    plan = best([*CPLANE, "plan", "--config", str(config), *common], repeat)
    assert "No changes." in plan.stdout, plan.stdout[-500:]
    full = best([*CPLANE, "plan", "--no-fast-path", "--config", str(config), *common], repeat)
    add("no-change plan", plan, None, ratio(plan.seconds, floor_plan_run.seconds),
        f"floor {floor_plan_run.seconds:.2f} s ({floor_plan_run.rss_mb:.0f} MB)")
    add("no-change plan, --no-fast-path", full, None, ratio(full.seconds, floor_plan_run.seconds), "full plan")


def _change(add, changed, common, first, what: str) -> None:
    """Plan, then apply, the tree `changed` (1% of the rows edited, `what` says where)."""
    change_plan = run([*CPLANE, "plan", "--config", str(changed), *common])
    change_apply = run([*CPLANE, "apply", "--auto-approve", "--config", str(changed), *common])
    n = change_plan.stdout.count("\n  ~ ")
    combined = Run(change_plan.seconds + change_apply.seconds, max(change_plan.rss_mb, change_apply.rss_mb), "", "")
    add(f"1% change, {what}: plan + apply ({n} updates)", combined, None, None,
        f"plan {change_plan.seconds:.2f} s + apply {change_apply.seconds:.2f} s; "
        f"{combined.seconds / first.seconds:.2f}x the first apply")


def _saved_change(add, changed, planfile: Path, common, first) -> None:
    """`cplane plan --out` of the one-file change, then `cplane apply` of that saved plan."""
    saved_plan = run([*CPLANE, "plan", "--config", str(changed), "--out", str(planfile), *common])
    saved_apply = run([*CPLANE, "apply", str(planfile), "--config", str(changed), *common])
    assert "Apply complete." in saved_apply.stdout, saved_apply.stdout[-500:]
    n = saved_plan.stdout.count("\n  ~ ")
    combined = Run(saved_plan.seconds + saved_apply.seconds, max(saved_plan.rss_mb, saved_apply.rss_mb), "", "")
    add(f"1% change, one file: plan --out + apply of the saved plan ({n} updates)", combined, None, None,
        f"plan {saved_plan.seconds:.2f} s + apply {saved_apply.seconds:.2f} s; "
        f"{combined.seconds / first.seconds:.2f}x the first apply")


def _drift(add, ratio, db, changed, common, floor_plan_run) -> None:
    db.execute("UPDATE seed_keywords SET search_volume = search_volume + 1 "
               "WHERE id = (SELECT min(id) FROM seed_keywords WHERE account_id IS NULL)")
    drift = run([*CPLANE, "plan", "--config", str(changed), *common])
    named = "(drift" in drift.stdout or "drift" in drift.stdout
    add("one drifted row (edited by SQL) plan", drift, None, ratio(drift.seconds, floor_plan_run.seconds),
        f"named as drift: {'yes' if named else 'NO'}")
    run([*CPLANE, "apply", "--auto-approve", "--config", str(changed), *common])


def _export(add, ratio, work, rows, db, common, repeat) -> None:
    """Export and its floor alternately, `repeat` times each into fresh folders; best of each."""
    runs, floors = [], []
    for i in range(repeat):
        out, floor_out = work / f"export-{rows}-{i}", work / f"export-floor-{rows}-{i}"
        for d in (out, floor_out):
            shutil.rmtree(d, ignore_errors=True)
        floors.append(run(floor("export", db.url, str(floor_out))))
        runs.append(run([*CPLANE, "export", "--out", str(out), *common]))
        for d in (out, floor_out):
            shutil.rmtree(d, ignore_errors=True)
    export = min(runs, key=lambda r: r.seconds)
    floor_export_run = min(floors, key=lambda r: r.seconds)
    add("export", export, None, ratio(export.seconds, floor_export_run.seconds),
        f"floor {floor_export_run.seconds:.2f} s ({floor_export_run.rss_mb:.0f} MB); best of {repeat}")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    with psycopg.connect(ADMIN) as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}), PostgreSQL {server}, "
            f"Python {platform.python_version()}; load average {load:.1f} at the start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--naive-max", type=int, default=100_000, help="Run the naive loader up to this many rows.")
    parser.add_argument("--repeat", type=int, default=3, help="Runs of each quick step (plans, no-op apply); best kept.")
    parser.add_argument("--write", type=Path, help="Markdown file whose controller_bench section is replaced.")
    parser.add_argument("--steps", default=",".join(STEPS),
                        help=f"Comma-separated steps to run, of {', '.join(STEPS)} (default: all).")
    parser.add_argument("--floor", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = tuple(s.strip() for s in args.steps.split(",") if s.strip())
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}; steps are {', '.join(STEPS)}")
    if args.floor:
        name, url, path = args.floor
        if name == "export":
            floor_export(url, Path(path))
        else:
            FLOORS[name](url, Path(path))
        return
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    # cplane's bytecode compiled first, as an installed package (or any run after the first) has
    # it: with PYTHONDONTWRITEBYTECODE set (this machine sets it) an editable checkout compiled
    # ~76 modules from source in every process, ~0.1 s that no user pays and no floor paid.
    for package in ("control_plane", "runtime"):
        compileall.compile_dir(str(REPO / package), quiet=1)
    run([sys.executable, "-c", "pass"])  # starts the spawner while this process is small
    about = machine()
    lines = [
        "| rows | step | seconds | peak RSS MB | naive ÷ cplane | cplane ÷ floor | notes |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            for step, seconds, rss, vs_naive, vs_floor, note in bench(rows, Path(tmp), args.naive_max, args.repeat, steps):
                lines.append(
                    f"| {rows:,} | {step} | {seconds:.2f} | {rss:.0f} | {'' if vs_naive is None else f'{vs_naive:.1f}x'} | "
                    f"{'' if vs_floor is None else f'{vs_floor:.2f}x'} | {note} |"
                )
    table = "\n".join(lines)
    section = (f"{MARK_START}\nRun {started} on {about}: `bench/controller_bench.py --rows "
               f"{' '.join(str(r) for r in args.rows)}"
               + (f" --steps {','.join(steps)}" if steps != STEPS else "") + "`. Every step is a whole process (wall clock; peak RSS from "
               "the kernel); the floors are processes too, measured in the same run on the same rows.\n\n"
               f"{table}\n{MARK_END}")
    if args.write:
        text = args.write.read_text() if args.write.exists() else ""
        if MARK_START in text and MARK_END in text:
            head, rest = text.split(MARK_START, 1)
            text = head + section + rest.split(MARK_END, 1)[1]
        else:
            text = text.rstrip() + "\n\n## Controller, whole processes: `bench/controller_bench.py`\n\n" + section + "\n"
        args.write.write_text(text)
    print(table)


if __name__ == "__main__":
    main()
