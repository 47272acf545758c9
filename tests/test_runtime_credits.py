"""Runtime API: credit balance, ledger, consumption (402, 422, idempotency, concurrency)."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
from helpers import new_tenant
from sqlalchemy import text


def set_balance(engine, account_id: str, balance: int) -> None:
    """Adjust the balance and record the adjustment, so the ledger still sums to the balance."""
    with engine.begin() as conn:
        current = conn.execute(text("SELECT balance FROM credit_balances WHERE account_id = :a"),
                               {"a": account_id}).scalar()
        conn.execute(text("UPDATE credit_balances SET balance = :b WHERE account_id = :a"),
                     {"a": account_id, "b": balance})
        conn.execute(text(
            "INSERT INTO credit_transactions (id, account_id, amount, balance_after, transaction_type, description) "
            "VALUES (:id, :a, :amt, :b, 'adjustment', 'test')"),
            {"id": uuid.uuid4(), "a": account_id, "amt": balance - current, "b": balance})


def cost_of(engine, operation: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT credits FROM credit_cost_configs WHERE operation = :o"),
                            {"o": operation}).scalar()


def ledger(engine, account_id: str) -> tuple[int, int, int]:
    """(balance, sum of transactions, sum of usage logs)."""
    with engine.connect() as conn:
        balance = conn.execute(text("SELECT balance FROM credit_balances WHERE account_id = :a"),
                               {"a": account_id}).scalar()
        total = conn.execute(text("SELECT coalesce(sum(amount), 0) FROM credit_transactions WHERE account_id = :a"),
                             {"a": account_id}).scalar()
        used = conn.execute(text("SELECT coalesce(sum(credits_used), 0) FROM credit_usage_logs WHERE account_id = :a"),
                            {"a": account_id}).scalar()
    return balance, total, used


def consume(client, tenant, operation="clustering", quantity=1, key=None):
    return client.post("/v1/credits/consume", headers=tenant.headers,
                       json={"operation": operation, "quantity": quantity, "idempotency_key": key or uuid.uuid4().hex})


def test_balance_starts_from_plan_allowance(client, tenant_a):
    body = client.get("/v1/credits", headers=tenant_a.headers).json()
    plan = {p["name"]: p for p in client.get("/v1/catalog/plans").json()["items"]}["pro"]
    assert body["balance"] == plan["monthly_credits"]
    assert body["idea_credits"] == plan["idea_credits"]
    tx = client.get("/v1/credits/transactions", headers=tenant_a.headers).json()
    assert tx["items"][0]["transaction_type"] == "grant" and tx["items"][0]["amount"] == plan["monthly_credits"]


def test_consume_charges_cost_times_quantity(client, rt_engine):
    t = new_tenant(rt_engine, "pro")
    before = client.get("/v1/credits", headers=t.headers).json()["balance"]
    cost = cost_of(rt_engine, "content_generation")
    r = consume(client, t, "content_generation", 3)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["charged"] == cost * 3 and body["balance"] == before - cost * 3
    uuid.UUID(body["transaction_id"])
    assert client.get("/v1/credits", headers=t.headers).json()["balance"] == before - cost * 3
    items = client.get("/v1/credits/transactions", headers=t.headers).json()["items"]
    charge = items[-1]
    assert charge["id"] == body["transaction_id"] and charge["amount"] == -cost * 3
    assert charge["operation"] == "content_generation" and charge["balance_after"] == body["balance"]
    with rt_engine.connect() as conn:
        log = conn.execute(text("SELECT * FROM credit_usage_logs WHERE transaction_id = :t"),
                           {"t": body["transaction_id"]}).one()
    assert log.quantity == 3 and log.credits_used == cost * 3 and log.operation == "content_generation"
    balance, total, _used = ledger(rt_engine, t.account_id)
    assert balance == total


def test_unknown_operation_and_bad_quantity(client, tenant_a):
    r = consume(client, tenant_a, "teleportation")
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_operation"
    r = consume(client, tenant_a, "clustering", 0)
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    r = client.post("/v1/credits/consume", headers=tenant_a.headers, json={"operation": "clustering", "quantity": 1})
    assert r.status_code == 422  # idempotency_key is required


def test_inactive_operation_is_unknown(client, rt_engine, tenant_a):
    with rt_engine.begin() as conn:
        conn.execute(text("UPDATE credit_cost_configs SET is_active = false WHERE operation = 'rewrite'"))
    try:
        r = consume(client, tenant_a, "rewrite")
        assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_operation"
    finally:
        with rt_engine.begin() as conn:
            conn.execute(text("UPDATE credit_cost_configs SET is_active = true WHERE operation = 'rewrite'"))


def test_insufficient_credits_charges_nothing(client, rt_engine):
    t = new_tenant(rt_engine, "free")
    cost = cost_of(rt_engine, "clustering")
    set_balance(rt_engine, t.account_id, cost * 2 - 1)
    assert consume(client, t, "clustering", 1).status_code == 200
    before = ledger(rt_engine, t.account_id)
    r = consume(client, t, "clustering", 1, key="too-much")
    assert r.status_code == 402 and r.json()["error"]["code"] == "insufficient_credits"
    assert ledger(rt_engine, t.account_id) == before
    # the same key may succeed later, once there are credits
    set_balance(rt_engine, t.account_id, 100)
    assert consume(client, t, "clustering", 1, key="too-much").status_code == 200


def test_idempotent_retry_returns_first_result(client, rt_engine):
    t = new_tenant(rt_engine, "pro")
    first = consume(client, t, "clustering", 2, key="retry-me").json()
    second = consume(client, t, "clustering", 2, key="retry-me")
    assert second.status_code == 200
    assert second.json()["transaction_id"] == first["transaction_id"]
    assert second.json()["charged"] == first["charged"] and second.json()["balance"] == first["balance"]
    assert second.json()["replayed"] is True
    assert client.get("/v1/credits", headers=t.headers).json()["balance"] == first["balance"]
    r = consume(client, t, "clustering", 5, key="retry-me")
    assert r.status_code == 409 and r.json()["error"]["code"] == "idempotency_key_reused"
    # keys are per account: another account may use the same key
    other = new_tenant(rt_engine, "pro")
    assert consume(client, other, "clustering", 2, key="retry-me").json()["transaction_id"] != first["transaction_id"]


def test_tenants_do_not_share_balances(client, tenant_a, tenant_b):
    def transactions(tenant) -> list[dict]:
        return client.get("/v1/credits/transactions", headers=tenant.headers).json()["items"]

    before_b = client.get("/v1/credits", headers=tenant_b.headers).json()["balance"]
    before_b_tx = transactions(tenant_b)
    r = consume(client, tenant_a, "clustering")
    assert r.status_code == 200
    charged = r.json()["transaction_id"]
    assert client.get("/v1/credits", headers=tenant_b.headers).json()["balance"] == before_b
    # A's charge is in A's ledger and nowhere in B's, whose ledger did not move at all.
    assert charged in {i["id"] for i in transactions(tenant_a)}
    after_b_tx = transactions(tenant_b)
    assert charged not in {i["id"] for i in after_b_tx}
    assert after_b_tx == before_b_tx


def test_transactions_page(client, rt_engine):
    t = new_tenant(rt_engine, "pro")
    for _ in range(4):
        consume(client, t)
    page1 = client.get("/v1/credits/transactions", params={"limit": 3}, headers=t.headers).json()
    page2 = client.get("/v1/credits/transactions", params={"limit": 3, "cursor": page1["next"]},
                       headers=t.headers).json()
    assert len(page1["items"]) == 3 and len(page2["items"]) == 2 and page2["next"] is None


def test_concurrent_consumes_never_overdraw(live_server, rt_engine):
    """50 concurrent charges of 1 unit against a balance for 30: exactly 30 succeed."""
    t = new_tenant(rt_engine, "pro")
    cost = cost_of(rt_engine, "meta_description")
    set_balance(rt_engine, t.account_id, cost * 30)
    barrier = threading.Barrier(50)

    def one(i: int) -> int:
        barrier.wait()
        r = httpx.post(f"{live_server.url}/v1/credits/consume", headers=t.headers, timeout=60,
                       json={"operation": "meta_description", "quantity": 1, "idempotency_key": f"c-{i}"})
        return r.status_code

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(one, range(50)))
    assert statuses.count(200) == 30 and statuses.count(402) == 20, statuses
    balance, total, used = ledger(rt_engine, t.account_id)
    assert balance == 0 and total == 0
    assert used == cost * 30
    with rt_engine.connect() as conn:
        charges = conn.execute(text("SELECT count(*) FROM credit_transactions WHERE account_id = :a "
                                    "AND transaction_type = 'charge'"), {"a": t.account_id}).scalar()
    assert charges == 30


def test_concurrent_retries_of_one_key_charge_once(live_server, rt_engine):
    t = new_tenant(rt_engine, "pro")
    cost = cost_of(rt_engine, "meta_description")
    before, _, _ = ledger(rt_engine, t.account_id)
    barrier = threading.Barrier(20)

    def one(_i: int):
        barrier.wait()
        r = httpx.post(f"{live_server.url}/v1/credits/consume", headers=t.headers, timeout=60,
                       json={"operation": "meta_description", "quantity": 1, "idempotency_key": "same"})
        return r.status_code, r.json()

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    assert {s for s, _ in results} == {200}
    assert len({body["transaction_id"] for _, body in results}) == 1
    balance, total, used = ledger(rt_engine, t.account_id)
    assert balance == before - cost == total and used == cost
