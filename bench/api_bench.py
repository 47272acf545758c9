"""Runtime API benchmark on PostgreSQL.

Serves the app with uvicorn in a subprocess (one worker) on a fresh database with the repo's
config applied, and measures requests/s and p50/p99 latency of

  - GET /__bench/bare          a bare FastAPI endpoint that does nothing (same app, same middleware)
  - GET /v1/prompts            effective prompts (auth + global/custom resolution)
  - POST /v1/credits/consume   atomic charge + ledger + usage log, unique idempotency keys

at 1 and 50 concurrent clients, in the same run. Load comes from httpx async clients spread over
client processes. Prints a markdown table and writes it to bench/out/benchmarks-api.md (summarised in docs/benchmarks.md).

    .venv/bin/python bench/api_bench.py [--seconds 5] [--runs 3] [--pg postgresql://postgres@127.0.0.1:5432/postgres]

The bare endpoint is a route of the same app in the same server process, so it runs with exactly the
server settings (workers, loop, HTTP implementation, logging) and middleware of the measured routes.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def bench_app():
    """uvicorn factory: the runtime app plus a bare endpoint."""
    from runtime.app import create_app

    app = create_app()

    @app.get("/__bench/bare", include_in_schema=False)
    async def bare():
        return {}

    return app


# --- load generation -------------------------------------------------------------------------------


def _client_proc(url: str, method: str, path: str, headers: dict, body_kind: str, clients: int,
                 seconds: float, start_at: float, out) -> None:
    import httpx

    async def run() -> tuple[list[float], dict[str, int]]:
        latencies: list[float] = []
        errors: dict[str, int] = {}  # kind (status code or exception) -> count
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:
            # warm the connections
            await asyncio.gather(*(client.request(method, path, json=_body(body_kind)) for _ in range(clients)))
            while time.time() < start_at:
                await asyncio.sleep(0.001)
            deadline = start_at + seconds

            async def worker():
                while True:
                    t0 = time.perf_counter()
                    if t0 > deadline_perf:
                        return
                    try:
                        r = await client.request(method, path, json=_body(body_kind))
                    except httpx.HTTPError as exc:
                        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                        continue
                    latencies.append(time.perf_counter() - t0)
                    if r.status_code >= 400:
                        errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1

            deadline_perf = time.perf_counter() + (deadline - time.time())
            await asyncio.gather(*(worker() for _ in range(clients)))
        return latencies, errors

    try:
        latencies, errors = asyncio.run(run())
    except Exception as exc:  # always report, so the parent never waits for a dead client
        print(f"client process failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        latencies, errors = [], {type(exc).__name__: 1}
    out.put((latencies, errors))


def _body(kind: str):
    if kind == "consume":
        return {"operation": "meta_description", "quantity": 1, "idempotency_key": uuid.uuid4().hex}
    return None


def measure(url: str, method: str, path: str, headers: dict, body_kind: str, concurrency: int,
            seconds: float) -> dict:
    procs_n = 1 if concurrency == 1 else max(1, min(4, (os.cpu_count() or 2)))
    per = [concurrency // procs_n + (1 if i < concurrency % procs_n else 0) for i in range(procs_n)]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 2.0
    procs = [ctx.Process(target=_client_proc, args=(url, method, path, headers, body_kind, n, seconds, start_at, out))
             for n in per if n]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 300) for _ in procs]
    for p in procs:
        p.join()
    latencies = sorted(x for lat, _ in results for x in lat)
    kinds: dict[str, int] = {}
    for _, e in results:
        for kind, count in e.items():
            kinds[kind] = kinds.get(kind, 0) + count
    n = len(latencies)
    return {
        "requests": n,
        "errors": sum(kinds.values()),
        "error_kinds": kinds,
        "rps": n / seconds,
        "p50": statistics.median(latencies) * 1000 if n else float("nan"),
        "p99": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else float("nan"),
    }


# --- setup -----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("CPLANE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=1, help="rounds of every cell; the table shows medians")
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "benchmarks-api.md"))
    args = parser.parse_args()

    import psycopg
    from psycopg import sql
    from sqlalchemy import text

    from control_plane.db.engine import make_engine, upgrade
    from control_plane.reconcile.controller import apply_config
    from runtime.accounts import create_account

    dbname = f"cplane_bench_{uuid.uuid4().hex[:10]}"
    base = args.pg.rpartition("/")[0]
    db_url = f"{base}/{dbname}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    server = None
    try:
        engine = make_engine(db_url)
        upgrade(engine)
        apply_config(engine, REPO / "config", environment=None, actor="bench")
        account = create_account(engine, name="Bench", plan="enterprise", owner_email="bench@example.com")
        with engine.begin() as conn:  # enough credits for every consume of the run
            conn.execute(text("UPDATE credit_balances SET balance = 2000000000 WHERE account_id = :a"),
                         {"a": account["account_id"]})
        engine.dispose()

        port = _free_port()
        # CPLANE_RATE_LIMITS=off: a benchmark sends far more than a plan allows per minute.
        env = dict(os.environ, DATABASE_URL=db_url, CPLANE_SECRET_KEY=os.environ.get("CPLANE_SECRET_KEY", "bench"),
                   CPLANE_RATE_LIMITS="off")
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api_bench:bench_app", "--factory", "--app-dir", str(REPO / "bench"),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--loop", "asyncio", "--http", "h11",
             "--log-level", "warning", "--no-access-log"],
            env=env, cwd=REPO,
        )
        url = f"http://127.0.0.1:{port}"
        import httpx

        deadline = time.time() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit("server did not start")
            time.sleep(0.1)

        auth = {"Authorization": f"Bearer {account['api_key']}"}
        cases = [
            ("bare endpoint", "GET", "/__bench/bare", {}, "none"),
            ("GET /v1/prompts", "GET", "/v1/prompts", auth, "none"),
            ("POST /v1/credits/consume", "POST", "/v1/credits/consume", auth, "consume"),
        ]
        runs: dict[tuple[str, int], list[dict]] = {}
        for round_ in range(args.runs):
            for concurrency in (1, 50):
                bare_rps = None
                for label, method, path, headers, body in cases:
                    r = measure(url, method, path, headers, body, concurrency, args.seconds)
                    if bare_rps is None:  # the bare endpoint runs first: the reference of this round
                        bare_rps = r["rps"]
                    r["vs_bare"] = r["rps"] / bare_rps if bare_rps else float("nan")
                    runs.setdefault((label, concurrency), []).append(r)
                    print(f"[{round_ + 1}/{args.runs}] {label:28} c={concurrency:<3} {r['rps']:8.0f} req/s  "
                          f"p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms  {r['vs_bare']:5.0%} of bare  "
                          f"errors {r['errors']} {r['error_kinds'] or ''}", file=sys.stderr)
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))

    def med(values: list[dict], key: str) -> float:
        return statistics.median(v[key] for v in values)

    lines = [
        "| endpoint | clients | req/s | p50 ms | p99 ms | vs bare | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (label, c), values in runs.items():
        lines.append(f"| {label} | {c} | {med(values, 'rps'):.0f} | {med(values, 'p50'):.2f} | "
                     f"{med(values, 'p99'):.2f} | {med(values, 'vs_bare'):.0%} | {sum(v['errors'] for v in values)} |")
    table = "\n".join(lines)
    header = (
        "## Runtime API\n\n"
        f"`bench/api_bench.py --runs {args.runs}`, {args.seconds:g} s per cell; one uvicorn server "
        "(1 worker, asyncio loop, h11, no access log) serves all three endpoints, the bare one included; "
        f"PostgreSQL on localhost; {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs (load generator on the same machine). "
        + (f"Medians of {args.runs} rounds; " if args.runs > 1 else "")
        + "`vs bare` is throughput relative to the bare endpoint measured just before, at the same "
        "concurrency" + (" (median of the rounds' ratios)" if args.runs > 1 else "")
        + "; target for effective prompts: at least 50%.\n\n"
    )
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(header + table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
