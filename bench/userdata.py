"""Generator of realistic tenant (user) data, for benchmarks and tests of the cleanup.

    from bench.userdata import ensure_system_data, generate
    ensure_system_data(engine)                   # the few system rows user data points at
    counts = generate(engine, rows=1_000_000)    # ~rows user rows over ~rows/4200 accounts

Accounts with their owners, users, sites, sectors, keywords, clusters, ideas, tasks, content,
images, taxonomies, billing, credits, AI task logs, sessions, task results, automation runs, sync
events... with created_at spread uniformly over the last year. On PostgreSQL the rows go in with
COPY (psycopg), elsewhere with executemany. Deterministic for a given seed (ids included).

Run it: python -m bench.userdata DATABASE_URL [ROWS]
"""

from __future__ import annotations

import json
import random
import sys
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, insert, select, text
from sqlalchemy.engine import Engine

from control_plane.db.models import metadata

YEAR = timedelta(days=365)

# Rows per site and per account (see `generate`): about 4,200 user rows per account.
PER_SITE = {
    "sectors": 3, "clusters": 20, "keywords": 300, "content_ideas": 60, "tasks": 40, "content": 40,
    "content_taxonomies": 10, "automation_runs": 30, "sync_events": 100, "deployment_records": 5,
}
ROWS_PER_ACCOUNT = 4200


def ensure_system_data(engine: Engine) -> dict[str, list]:
    """Make sure the system rows user data references exist (inserting a minimal set where the
    config has none) and return their ids per table."""
    t = metadata.tables
    with engine.begin() as conn:
        def ids(table: str, where: str = "") -> list:
            return list(conn.execute(text(f"SELECT id FROM {table} {where} ORDER BY id")).scalars())

        if not ids("plans"):
            conn.execute(insert(t["plans"]), [
                {"slug": "bench-free", "name": "Bench Free", "price_monthly": Decimal(0), "price_yearly": Decimal(0),
                 "currency": "USD", "modules": [], "features": []},
            ])
        if not ids("roles"):
            conn.execute(insert(t["roles"]), [{"slug": s, "name": s.title(), "rank": i}
                                              for i, s in enumerate(["owner", "editor"])])
        if not ids("publishing_channels"):
            conn.execute(insert(t["publishing_channels"]), [
                {"slug": "wordpress", "name": "WordPress", "channel_type": "wordpress", "capabilities": [], "settings": {}}
            ])
        if not ids("content_type_configs"):
            conn.execute(insert(t["content_type_configs"]), [
                {"slug": "blog-post", "name": "Blog post", "default_structure": [], "settings": {}}
            ])
        if not ids("credit_packages"):
            conn.execute(insert(t["credit_packages"]), [
                {"slug": "bench-100", "name": "100 credits", "credits": 100, "price": Decimal("9.00")}
            ])
        if not ids("payment_method_configs"):
            conn.execute(insert(t["payment_method_configs"]), [
                {"slug": "bench-card", "name": "Card", "provider": "stripe", "currencies": [], "countries": [],
                 "settings": {}}
            ])
        if not ids("taxonomy_configs"):
            conn.execute(insert(t["taxonomy_configs"]), [
                {"slug": "categories", "name": "Categories", "taxonomy_type": "category", "rules": {}}
            ])
        if not ids("industries"):
            conn.execute(insert(t["industries"]), [
                {"slug": s, "name": s.title()} for s in ("healthcare", "finance", "technology")
            ])
        industries = ids("industries")
        if not ids("industry_sectors"):
            conn.execute(insert(t["industry_sectors"]), [
                {"industry_id": ind, "slug": f"sector-{j}", "name": f"Sector {j}"}
                for ind in industries for j in range(3)
            ])
        sectors = conn.execute(text("SELECT id, industry_id FROM industry_sectors ORDER BY id")).all()
        if not ids("seed_keywords", "WHERE account_id IS NULL"):
            conn.execute(insert(t["seed_keywords"]), [
                {"account_id": None, "industry_id": ind, "sector_id": sec, "keyword": f"system seed {sec}-{k}",
                 "search_volume": 100 * k, "intent": "informational"}
                for sec, ind in sectors for k in range(5)
            ])
        if not ids("ai_integration_settings", "WHERE account_id IS NULL"):
            conn.execute(insert(t["ai_integration_settings"]), [
                {"account_id": None, "name": "default", "text_provider": "openai", "text_model": "gpt-4o",
                 "temperature": Decimal("0.70"), "max_tokens": 4000, "image_provider": "openai",
                 "image_model": "dall-e-3", "image_size": "1024x1024", "image_quality": "standard",
                 "image_style": "natural", "providers": {}, "api_keys_encrypted": {}}
            ])
        return {
            name: ids(name)
            for name in ("plans", "roles", "publishing_channels", "content_type_configs", "credit_packages",
                         "payment_method_configs", "taxonomy_configs", "industries", "industry_sectors",
                         "global_author_profiles", "global_strategies", "global_ai_prompts")
        } | {"system_seeds": list(conn.execute(text(
            "SELECT id, industry_id, sector_id FROM seed_keywords WHERE account_id IS NULL ORDER BY id")).all())}


class _Gen:
    def __init__(self, seed: int, now: datetime):
        self.rnd = random.Random(seed)
        self.now = now
        self.rows: dict[str, list[dict[str, Any]]] = {}

    def uid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rnd.getrandbits(128), version=4)

    def when(self) -> datetime:
        """A creation time spread uniformly over the last year."""
        return self.now - timedelta(seconds=self.rnd.uniform(60, YEAR.total_seconds()))

    def add(self, table: str, **row: Any) -> dict[str, Any]:
        self.rows.setdefault(table, []).append(row)
        return row


def _build(accounts: int, system: dict[str, list], now: datetime, seed: int) -> dict[str, list[dict[str, Any]]]:
    g = _Gen(seed, now)
    pick = g.rnd.choice
    plans, roles, channels = system["plans"], system["roles"], system["publishing_channels"]
    ctypes, packages, pmcs = system["content_type_configs"], system["credit_packages"], system["payment_method_configs"]
    taxcfgs, industries, isectors = system["taxonomy_configs"], system["industries"], system["industry_sectors"]
    seeds = system["system_seeds"]
    statuses = {
        "keywords": ["pending", "clustered", "used", "archived"],
        "ideas": ["pending", "approved", "used", "archived"],
        "tasks": ["pending", "in_progress", "completed", "cancelled"],
        "content": ["draft", "review", "approved", "published"],
    }
    for a in range(accounts):
        acc_id, created = g.uid(), g.when()
        plan = pick(plans)
        users = []
        for u in range(5):
            users.append(g.add("users", id=g.uid(), account_id=acc_id, email=f"user{u}.{acc_id.hex[:12]}@example.test",
                               first_name=f"User{u}", role_id=pick(roles), password_hash="x" * 60,
                               created_at=created + timedelta(minutes=u), updated_at=created))
        g.add("accounts", id=acc_id, name=f"Account {a}", slug=f"acct-{acc_id.hex[:16]}", plan_id=plan,
              owner_id=users[0]["id"], status="active", billing_email=f"billing{a}@example.test",
              created_at=created, updated_at=created)
        uids = [u["id"] for u in users]
        g.add("credit_balances", id=g.uid(), account_id=acc_id, balance=g.rnd.randint(0, 10000),
              created_at=created, updated_at=created)
        g.add("module_enable_settings", account_id=acc_id, created_at=created, updated_at=created)
        sub = g.add("subscriptions", id=g.uid(), account_id=acc_id, plan_id=plan, created_at=created,
                    updated_at=created)
        g.add("account_payment_methods", id=g.uid(), account_id=acc_id, payment_method_config_id=pick(pmcs),
              display_name="Visa", last4="4242", created_at=created, updated_at=created)
        for m in range(12):
            inv = g.add("invoices", id=g.uid(), account_id=acc_id, subscription_id=sub["id"],
                        number=f"INV-{acc_id.hex[:10]}-{m}", amount=Decimal("29.00"), line_items=[],
                        created_at=now - timedelta(days=30 * m), updated_at=now)
            g.add("payments", id=g.uid(), account_id=acc_id, invoice_id=inv["id"], payment_method_config_id=pick(pmcs),
                  amount=Decimal("29.00"), status="succeeded", created_at=inv["created_at"], updated_at=now)
            g.add("plan_limit_usage", id=g.uid(), account_id=acc_id, limit_name="content",
                  period_start=date(now.year, 1, 1) - timedelta(days=31 * m), used=g.rnd.randint(0, 50),
                  created_at=created, updated_at=created)
        g.add("api_keys", id=g.uid(), account_id=acc_id, user_id=uids[0], name="default", prefix=acc_id.hex[:8],
              key_hash=g.uid().hex + g.uid().hex, created_at=created)
        g.add("webhook_configs", id=g.uid(), account_id=acc_id, url="https://example.test/hook", events=["content"],
              created_at=created, updated_at=created)
        g.add("ai_prompts", id=g.uid(), account_id=acc_id, prompt_type="clustering", text="Cluster these keywords",
              created_at=created, updated_at=created)
        g.add("author_profiles", id=g.uid(), account_id=acc_id, slug="house-style", name="House style",
              structure={}, guidelines=[], created_at=created, updated_at=created)
        strategy = g.add("strategies", id=g.uid(), account_id=acc_id, slug="house", name="House strategy",
                         prompt_types=[], sections=[], settings={}, created_at=created, updated_at=created)
        if a % 2 == 0:
            g.add("ai_integration_settings", account_id=acc_id, name="default", text_provider="openai",
                  text_model="gpt-4o-mini", temperature=Decimal("0.50"), max_tokens=2000, image_provider="openai",
                  image_model="dall-e-3", image_size="1024x1024", image_quality="standard", image_style="vivid",
                  providers={}, api_keys_encrypted={}, created_at=created, updated_at=created)
        for k in range(10):
            seed_row = pick(seeds)
            g.add("seed_keywords", account_id=acc_id, industry_id=seed_row[1], sector_id=seed_row[2],
                  keyword=f"account seed {k}", created_at=created, updated_at=created)
        for i in range(150):
            ts = g.when()
            tx = g.add("credit_transactions", id=g.uid(), account_id=acc_id, amount=-g.rnd.randint(1, 20),
                       balance_after=g.rnd.randint(0, 10000), transaction_type="charge", operation="content",
                       idempotency_key=f"k{i}", credit_package_id=pick(packages) if i % 50 == 0 else None,
                       created_at=ts)
            g.add("credit_usage_logs", id=g.uid(), account_id=acc_id, user_id=pick(uids), transaction_id=tx["id"],
                  operation="content_generation", credits_used=-tx["amount"], created_at=ts)
        for _ in range(300):
            g.add("ai_task_logs", id=g.uid(), account_id=acc_id, operation="content_generation", provider="openai",
                  model="gpt-4o", status="succeeded", tokens_in=g.rnd.randint(100, 4000),
                  tokens_out=g.rnd.randint(100, 4000), cost=Decimal("0.010000"), duration_ms=g.rnd.randint(200, 9000),
                  created_at=g.when())
        for _ in range(200):
            ts = g.when()
            g.add("task_results", id=g.uid(), task_id=str(g.uid()), task_name="generate_content", status="SUCCESS",
                  result={"ok": True}, date_created=ts, date_done=ts + timedelta(seconds=g.rnd.randint(1, 300)))
        for _ in range(20):
            ts = g.when()
            g.add("group_results", id=g.uid(), group_id=str(g.uid()), result={"ok": True}, date_created=ts,
                  date_done=ts + timedelta(seconds=30))
            g.add("admin_log_entries", id=g.uid(), user_id=pick(uids), action_time=g.when(), object_type="site",
                  action_flag=2, change_message="changed")
        for _ in range(50):
            g.add("audit_logs", id=g.uid(), account_id=acc_id, user_id=pick(uids), action="update",
                  object_type="content", changes={}, created_at=g.when())
        for uid_ in uids:
            for _ in range(20):
                ts = g.when()
                g.add("sessions", id=g.uid(), user_id=uid_, session_key_hash=g.uid().hex + g.uid().hex, data={},
                      expires_at=ts + timedelta(days=14), created_at=ts)
            for _ in range(2):
                ts = g.when()
                g.add("password_reset_tokens", id=g.uid(), user_id=uid_, token_hash=g.uid().hex + g.uid().hex,
                      expires_at=ts + timedelta(hours=24), created_at=ts)
        for s in range(3):
            site_id = g.uid()
            g.add("sites", id=site_id, account_id=acc_id, name=f"Site {s}", domain=f"s{s}.{acc_id.hex[:8]}.test",
                  industry_id=pick(industries), created_at=created, updated_at=created)
            for uid_ in uids[:2]:
                g.add("site_user_access", id=g.uid(), site_id=site_id, user_id=uid_, created_at=created)
            sectors = [g.add("sectors", id=g.uid(), account_id=acc_id, site_id=site_id,
                             industry_sector_id=pick(isectors), name=f"Sector {x}", created_at=created,
                             updated_at=created)["id"] for x in range(PER_SITE["sectors"])]
            clusters = [g.add("clusters", id=g.uid(), account_id=acc_id, site_id=site_id, sector_id=pick(sectors),
                              name=f"Cluster {c}", created_by_id=pick(uids), created_at=(ts := g.when()),
                              updated_at=ts)["id"] for c in range(PER_SITE["clusters"])]
            keywords = []
            for k in range(PER_SITE["keywords"]):
                ts = g.when()
                keywords.append(g.add("keywords", id=g.uid(), account_id=acc_id, site_id=site_id,
                                      sector_id=pick(sectors), cluster_id=pick(clusters) if k % 3 else None,
                                      seed_keyword_id=pick(seeds)[0] if k % 10 == 0 else None,
                                      keyword=f"keyword {k} {site_id.hex[:6]}", search_volume=g.rnd.randint(0, 90000),
                                      difficulty=g.rnd.randint(0, 100), status=pick(statuses["keywords"]),
                                      created_by_id=pick(uids), created_at=ts, updated_at=ts)["id"])
            ideas = []
            for i in range(PER_SITE["content_ideas"]):
                ts = g.when()
                idea = g.add("content_ideas", id=g.uid(), account_id=acc_id, site_id=site_id, sector_id=pick(sectors),
                             cluster_id=pick(clusters), primary_keyword_id=pick(keywords), title=f"Idea {i}",
                             content_type_id=pick(ctypes), status=pick(statuses["ideas"]), created_at=ts,
                             updated_at=ts)["id"]
                ideas.append(idea)
                for kw in g.rnd.sample(keywords, 2):
                    g.add("content_idea_keywords", idea_id=idea, keyword_id=kw)
            taxonomies: list[uuid.UUID] = []
            for x in range(PER_SITE["content_taxonomies"]):
                taxonomies.append(g.add("content_taxonomies", id=g.uid(), account_id=acc_id, site_id=site_id,
                                        taxonomy_config_id=pick(taxcfgs), name=f"Category {x}", slug=f"cat-{x}",
                                        parent_id=taxonomies[0] if x and x % 3 == 0 else None,
                                        created_at=created, updated_at=created)["id"])
            integration = g.add("site_integrations", id=g.uid(), account_id=acc_id, site_id=site_id,
                                channel_id=pick(channels), name="WordPress", settings={}, structure={},
                                created_at=created, updated_at=created)["id"]
            for t_ in range(PER_SITE["tasks"]):
                ts = g.when()
                task = g.add("tasks", id=g.uid(), account_id=acc_id, site_id=site_id, sector_id=pick(sectors),
                             idea_id=pick(ideas), title=f"Task {t_}", secondary_keywords=[],
                             status=pick(statuses["tasks"]), assigned_to_id=pick(uids), strategy_id=strategy["id"],
                             created_by_id=pick(uids), created_at=ts, updated_at=ts)["id"]
                content = g.add("content", id=g.uid(), account_id=acc_id, site_id=site_id, sector_id=pick(sectors),
                                task_id=task, content_type_id=pick(ctypes), title=f"Article {t_}",
                                body="Lorem ipsum dolor sit amet. " * g.rnd.randint(10, 40),
                                status=pick(statuses["content"]), word_count=g.rnd.randint(300, 3000),
                                created_by_id=pick(uids), created_at=ts, updated_at=ts)["id"]
                for p in range(2):
                    g.add("content_images", id=g.uid(), account_id=acc_id, content_id=content,
                          url=f"https://cdn.example.test/{content.hex}/{p}.png", position=p, created_at=ts)
                    g.add("content_attributes", id=g.uid(), content_id=content, name=f"attr{p}", value="v")
                for tax in g.rnd.sample(taxonomies, 2):
                    g.add("content_taxonomy_relations", id=g.uid(), content_id=content, taxonomy_id=tax, created_at=ts)
                g.add("content_cluster_maps", id=g.uid(), content_id=content, cluster_id=pick(clusters), created_at=ts)
                if t_ % 2 == 0:
                    g.add("publishing_records", id=g.uid(), account_id=acc_id, content_id=content,
                          integration_id=integration, channel_id=pick(channels), status="published", created_at=ts)
            config = g.add("automation_configs", id=g.uid(), account_id=acc_id, site_id=site_id,
                           created_at=created, updated_at=created)["id"]
            for _ in range(PER_SITE["automation_runs"]):
                g.add("automation_runs", id=g.uid(), account_id=acc_id, site_id=site_id, config_id=config,
                      status="completed", started_by_id=pick(uids), created_at=g.when())
            for _ in range(PER_SITE["sync_events"]):
                g.add("sync_events", id=g.uid(), account_id=acc_id, integration_id=integration, event_type="push",
                      status="done", payload={}, created_at=g.when())
            for d in range(PER_SITE["deployment_records"]):
                g.add("deployment_records", id=g.uid(), account_id=acc_id, site_id=site_id, version=f"1.{d}",
                      details={}, created_at=g.when())
    return g.rows


def _complete(table: str, rows: list[dict[str, Any]]) -> tuple[list[str], Iterable[tuple]]:
    """Columns and tuples with every Python-side default filled in (COPY does not know them)."""
    cols = metadata.tables[table].columns
    given = list(dict.fromkeys(k for r in rows[:1] for k in r))
    defaults = {}
    for c in cols:
        if c.name not in given and c.default is not None:
            defaults[c.name] = c.default
    names = given + list(defaults)
    json_cols = {c.name for c in cols if isinstance(c.type, JSON)}

    def values(row: dict[str, Any]) -> tuple:
        out = []
        for n in names:
            if n in row:
                v = row[n]
            else:
                d = defaults[n]
                v = d.arg(None) if d.is_callable else d.arg
            out.append(v)
        return tuple(out)

    return names, ((json.dumps(v) if n in json_cols and v is not None else v for n, v in zip(names, values(r), strict=True))
                   for r in rows)


def insert_rows(engine: Engine, rows: dict[str, list[dict[str, Any]]]) -> None:
    order = [t.name for t in metadata.sorted_tables if t.name in rows]
    # accounts.owner_id -> users closes a cycle with users.account_id -> accounts: set it afterwards.
    owners = [(r.pop("owner_id"), r["id"]) for r in rows.get("accounts", []) if "owner_id" in r]
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            with raw.driver_connection.cursor() as cur:
                for table in order:
                    names, tuples = _complete(table, rows[table])
                    cols = ", ".join(f'"{n}"' for n in names)
                    with cur.copy(f'COPY "{table}" ({cols}) FROM STDIN') as copy:
                        for tup in tuples:
                            copy.write_row(tuple(tup))
                cur.executemany("UPDATE accounts SET owner_id = %s WHERE id = %s", owners)
            raw.commit()
        finally:
            raw.close()
    else:
        with engine.begin() as conn:
            for table in order:
                conn.execute(insert(metadata.tables[table]), rows[table])
            if owners:
                conn.execute(text("UPDATE accounts SET owner_id = :o WHERE id = :i"),
                             [{"o": o.hex, "i": i.hex} for o, i in owners])


def generate(engine: Engine, rows: int | None = None, *, accounts: int | None = None, now: datetime | None = None,
             seed: int = 0) -> dict[str, int]:
    """Insert ~`rows` user rows (or `accounts` accounts' worth); returns rows inserted per table."""
    now = now or datetime.now(UTC)
    if accounts is None:
        accounts = max(1, round((rows or ROWS_PER_ACCOUNT) / ROWS_PER_ACCOUNT))
    system = ensure_system_data(engine)
    data = _build(accounts, system, now, seed)
    insert_rows(engine, data)
    return {t: len(r) for t, r in sorted(data.items())}


def user_row_count(engine: Engine) -> int:
    from control_plane.db.models.user import USER_TABLES

    with engine.connect() as conn:
        return sum(conn.execute(select(text("count(*)")).select_from(text(t))).scalar_one() for t in USER_TABLES)


if __name__ == "__main__":  # pragma: no cover
    from control_plane.db.engine import make_engine, upgrade

    eng = make_engine(sys.argv[1])
    upgrade(eng)
    started = time.perf_counter()
    counts = generate(eng, int(sys.argv[2]) if len(sys.argv) > 2 else 100_000)
    print(f"{sum(counts.values()):,} rows in {time.perf_counter() - started:.1f}s")
