"""Typed credit pools: the operation's pool pays first, then the general balance; periods start lazily
and exactly once under concurrency; the ledger says which pool paid."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
from helpers import new_tenant, ok
from sqlalchemy import text
from test_runtime_credits import POOLS, consume, cost_of


def credits(client, t) -> dict:
    return ok(client.get("/v1/credits", headers=t.headers))


def plan_of(client, name: str) -> dict:
    return {p["name"]: p for p in ok(client.get("/v1/catalog/plans"))["items"]}[name]


def ledger_sums(engine, account_id: str) -> dict[str, int]:
    """Sum of the general amounts and of each pool's deltas over the whole ledger."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT amount, pools FROM credit_transactions WHERE account_id = :a"),
                            {"a": account_id}).all()
    sums = {"general": sum(r.amount for r in rows), **{p: 0 for p in POOLS}}
    for r in rows:
        pools = r.pools if isinstance(r.pools, dict) else {}
        for p, n in pools.items():
            sums[p] += n
    return sums


def live(engine, account_id: str) -> dict[str, int]:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM credit_balances WHERE account_id = :a"), {"a": account_id}).one()
    return {"general": row.balance, **{p: getattr(row, f"{p}_credits") for p in POOLS}}


def set_pool(engine, account_id: str, pool: str, value: int) -> None:
    with engine.begin() as conn:
        current = conn.execute(text(f"SELECT {pool}_credits FROM credit_balances WHERE account_id = :a"),
                               {"a": account_id}).scalar()
        balance = conn.execute(text("SELECT balance FROM credit_balances WHERE account_id = :a"),
                               {"a": account_id}).scalar()
        conn.execute(text(f"UPDATE credit_balances SET {pool}_credits = :v WHERE account_id = :a"),
                     {"a": account_id, "v": value})
        conn.execute(text(
            "INSERT INTO credit_transactions (id, account_id, amount, balance_after, transaction_type, description, "
            "pools) VALUES (:id, :a, 0, :b, 'adjustment', 'test', :pools)"),
            {"id": uuid.uuid4(), "a": account_id, "b": balance, "pools": f'{{"{pool}": {value - current}}}'})


def test_credits_show_every_pool(client, rt_engine):
    t = new_tenant(rt_engine, "pro")
    plan = plan_of(client, "pro")
    body = credits(client, t)
    pools = {p["pool"]: p for p in body["pools"]}
    assert list(pools) == ["general", *POOLS]
    assert pools["general"]["available"] == body["balance"] == plan["monthly_credits"]
    for p in POOLS:
        assert pools[p]["available"] == pools[p]["allowance"] == plan[f"{p}_credits"] == body[f"{p}_credits"]
    first = ok(client.get("/v1/credits/transactions", headers=t.headers))["items"][0]
    assert first["pools"] == {p: plan[f"{p}_credits"] for p in POOLS if plan[f"{p}_credits"]}


def test_typed_pool_pays_first_then_general_then_402(client, rt_engine):
    t = new_tenant(rt_engine, "pro")
    cost = cost_of(rt_engine, "content_generation")
    assert cost > 1
    before = credits(client, t)
    for _ in range(2):
        body = ok(consume(client, t, "content_generation"))
        assert body["pool"] == "content" and body["charged"] == cost
        assert body["charged_from_pool"] == cost and body["charged_from_balance"] == 0
    after = credits(client, t)
    assert after["content_credits"] == before["content_credits"] - 2 * cost
    assert after["balance"] == before["balance"]
    charges = [i for i in ok(client.get("/v1/credits/transactions", headers=t.headers))["items"]
               if i["transaction_type"] == "charge"]
    assert [(c["pools"], c["amount"]) for c in charges] == [({"content": -cost}, 0)] * 2

    # the pool covers part of the charge: the general balance pays the rest
    set_pool(rt_engine, t.account_id, "content", 1)
    body = ok(consume(client, t, "content_generation"))
    assert (body["charged_from_pool"], body["charged_from_balance"]) == (1, cost - 1)
    assert body["pool_balance"] == 0 and body["balance"] == before["balance"] - (cost - 1)
    # pool exhausted: all from the general balance
    body = ok(consume(client, t, "content_generation"))
    assert (body["charged_from_pool"], body["charged_from_balance"]) == (0, cost)

    # both short: 402, nothing charged
    with rt_engine.begin() as conn:
        conn.execute(text("UPDATE credit_balances SET balance = :b WHERE account_id = :a"),
                     {"a": t.account_id, "b": cost - 1})
    snapshot = live(rt_engine, t.account_id)
    with rt_engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM credit_transactions WHERE account_id = :a"),
                             {"a": t.account_id}).scalar()
    r = consume(client, t, "content_generation")
    assert r.status_code == 402 and r.json()["error"]["code"] == "insufficient_credits"
    assert "content pool" in r.json()["error"]["message"]
    assert live(rt_engine, t.account_id) == snapshot
    with rt_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM credit_transactions WHERE account_id = :a"),
                            {"a": t.account_id}).scalar() == count


def test_general_operation_never_touches_typed_pools(client, rt_engine):
    t = new_tenant(rt_engine, "pro")
    before = live(rt_engine, t.account_id)
    cost = cost_of(rt_engine, "keyword_research")
    body = ok(consume(client, t, "keyword_research"))
    assert body["pool"] == "general" and body["charged_from_balance"] == cost
    after = live(rt_engine, t.account_id)
    assert after == {**before, "general": before["general"] - cost}


def test_concurrent_consumes_across_a_period_boundary_grant_once(live_server, rt_engine, client):
    """The period ended: 50 concurrent charges start the new one exactly once; the ledger is exact."""
    t = new_tenant(rt_engine, "pro")
    plan = plan_of(client, "pro")
    cost = cost_of(rt_engine, "content_generation")
    assert plan["content_credits"] >= 50 * cost
    today = datetime.now(UTC).date()
    with rt_engine.begin() as conn:  # a period that ended today, its content pool spent
        conn.execute(text("UPDATE credit_balances SET period_start = :s, period_end = :e WHERE account_id = :a"),
                     {"a": t.account_id, "s": today - timedelta(days=30), "e": today})
    set_pool(rt_engine, t.account_id, "content", 0)
    before = live(rt_engine, t.account_id)
    barrier = threading.Barrier(50)

    def one(i: int) -> int:
        barrier.wait()
        r = httpx.post(f"{live_server.url}/v1/credits/consume", headers=t.headers, timeout=60,
                       json={"operation": "content_generation", "quantity": 1, "idempotency_key": f"p-{i}"})
        return r.status_code

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(one, range(50)))
    assert statuses == [200] * 50
    with rt_engine.connect() as conn:
        grants = conn.execute(text("SELECT count(*) FROM credit_transactions WHERE account_id = :a AND "
                                   "transaction_type = 'grant' AND description LIKE 'period %'"),
                              {"a": t.account_id}).scalar()
        period = conn.execute(text("SELECT period_start, period_end FROM credit_balances WHERE account_id = :a"),
                              {"a": t.account_id}).one()
    assert grants == 1
    assert period.period_start == today and period.period_end == today + timedelta(days=30)
    after = live(rt_engine, t.account_id)
    assert after["content"] == plan["content_credits"] - 50 * cost
    assert after["general"] == before["general"] + plan["monthly_credits"]
    for p in ("idea", "image", "optimization"):
        assert after[p] == plan[f"{p}_credits"]
    assert ledger_sums(rt_engine, t.account_id) == after
