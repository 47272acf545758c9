"""Operators: roles, account lifecycle, credit adjustments and the manual-payment workflow, through
the API and the CLI."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from click.testing import CliRunner
from helpers import new_tenant, ok

PACKAGE = "credits-50k"  # the bank transfer's minimumAmount (500) rules out the smaller packs


def operator(engine, role: str) -> dict[str, str]:
    from runtime.staff import create_operator

    made = create_operator(engine, name=f"{role}-op", role=role)
    return {"Authorization": f"Bearer {made['operator_key']}"}


@pytest.fixture(scope="module")
def staff(rt_engine) -> dict[str, dict[str, str]]:
    return {role: operator(rt_engine, role) for role in ("admin", "finance", "support")}


def error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text
    return response.json()["error"]


def package(client) -> dict:
    return {p["name"]: p for p in ok(client.get("/v1/catalog/credit-packages"))["items"]}[PACKAGE]


def manual_payment(client, t, reference="BANK-REF-1") -> dict:
    return ok(client.post("/v1/billing/manual-payments", headers=t.headers,
                          json={"credit_package": PACKAGE, "reference": reference}), 201)


def test_operator_keys_are_separate_from_tenant_keys(client, rt_engine, staff):
    t = new_tenant(rt_engine, "pro")
    error(client.get("/v1/admin/accounts"), 401, "unauthorized")
    error(client.get("/v1/admin/accounts", headers=t.headers), 401, "unauthorized")
    error(client.get("/v1/account", headers=staff["admin"]), 401, "unauthorized")
    with rt_engine.connect() as conn:
        from sqlalchemy import text

        rows = conn.execute(text("SELECT prefix, key_hash FROM cplane_operators")).all()
    assert all(len(r.key_hash) == 64 for r in rows)
    assert all(staff["admin"]["Authorization"].split()[1] not in r.key_hash for r in rows)


def test_list_and_search_accounts(client, rt_engine, staff):
    t = new_tenant(rt_engine, "starter", name="Searchable Widgets")
    items = ok(client.get("/v1/admin/accounts", params={"q": "searchable widg"}, headers=staff["support"]))["items"]
    assert [i["id"] for i in items] == [t.account_id]
    assert items[0]["plan"] == "starter" and items[0]["status"] == "active" and items[0]["created_at"].endswith("Z")
    by_mail = ok(client.get("/v1/admin/accounts", params={"email": items[0]["owner_email"]},
                            headers=staff["finance"]))["items"]
    assert [i["id"] for i in by_mail] == [t.account_id]
    assert all(i["plan"] == "starter" for i in
               ok(client.get("/v1/admin/accounts", params={"plan": "starter"}, headers=staff["admin"]))["items"])


def test_suspend_and_activate(client, rt_engine, staff):
    t = new_tenant(rt_engine, "pro")
    error(client.post(f"/v1/admin/accounts/{t.account_id}/suspend", headers=staff["finance"]), 403, "forbidden_role")
    body = ok(client.post(f"/v1/admin/accounts/{t.account_id}/suspend", headers=staff["support"],
                          json={"reason": "chargeback"}))
    assert body["status"] == "suspended"
    for path in ("/v1/account", "/v1/credits", "/v1/prompts", "/v1/sites"):
        error(client.get(path, headers=t.headers), 403, "account_suspended")
    assert ok(client.get("/v1/admin/accounts", params={"status": "suspended", "q": body["name"]},
                         headers=staff["admin"]))["items"][0]["id"] == t.account_id
    ok(client.post(f"/v1/admin/accounts/{t.account_id}/activate", headers=staff["admin"]))
    assert client.get("/v1/account", headers=t.headers).status_code == 200
    audit = ok(client.get("/v1/admin/audit", params={"account_id": t.account_id}, headers=staff["admin"]))["items"]
    assert [(a["action"], a["actor"]) for a in audit] == [("account.suspend", "operator:support-op"),
                                                         ("account.activate", "operator:admin-op")]
    assert audit[0]["changes"]["reason"] == "chargeback" and audit[0]["created_at"].endswith("Z")


def test_credit_adjustments_never_below_zero(client, rt_engine, staff):
    t = new_tenant(rt_engine, "free")
    balance = ok(client.get("/v1/credits", headers=t.headers))["balance"]
    error(client.post(f"/v1/admin/accounts/{t.account_id}/credits", headers=staff["support"],
                      json={"amount": 10, "reason": "x"}), 403, "forbidden_role")
    body = ok(client.post(f"/v1/admin/accounts/{t.account_id}/credits", headers=staff["finance"],
                          json={"amount": 250, "reason": "goodwill"}))
    assert body["balance"] == balance + 250
    error(client.post(f"/v1/admin/accounts/{t.account_id}/credits", headers=staff["admin"],
                      json={"amount": -(balance + 251), "reason": "too much"}), 409, "insufficient_credits")
    body = ok(client.post(f"/v1/admin/accounts/{t.account_id}/credits", headers=staff["admin"],
                          json={"amount": -(balance + 250), "reason": "reset"}))
    assert body["balance"] == 0 == ok(client.get("/v1/credits", headers=t.headers))["balance"]
    ledger = ok(client.get("/v1/credits/transactions", headers=t.headers))["items"]
    assert [(i["transaction_type"], i["amount"]) for i in ledger[-2:]] == [("adjustment", 250),
                                                                         ("adjustment", -(balance + 250))]
    assert "goodwill" in ledger[-2]["description"]
    error(client.post(f"/v1/admin/accounts/{t.account_id}/credits", headers=staff["admin"],
                      json={"amount": 5}), 422, "validation_error")  # a reason is required


def test_manual_payment_approved_with_every_side_effect(client, rt_engine, staff):
    t = new_tenant(rt_engine, "pro")
    pack = package(client)
    before = ok(client.get("/v1/credits", headers=t.headers))["balance"]
    with rt_engine.begin() as conn:  # an account whose subscription lapsed
        from sqlalchemy import text

        conn.execute(text("UPDATE subscriptions SET status = 'past_due' WHERE account_id = :a"), {"a": t.account_id})
    payment = manual_payment(client, t)
    assert payment["status"] == "pending" and payment["invoice"]["status"] == "open"
    assert payment["amount"] == pack["price"] and payment["credit_package"] == PACKAGE
    pending = ok(client.get("/v1/admin/payments", params={"status": "pending"}, headers=staff["support"]))["items"]
    assert payment["id"] in [p["id"] for p in pending]

    error(client.post(f"/v1/admin/payments/{payment['id']}/approve", headers=staff["support"]), 403, "forbidden_role")
    approved = ok(client.post(f"/v1/admin/payments/{payment['id']}/approve", headers=staff["finance"]))
    credits = pack["credits"] + pack["bonus_credits"]
    assert approved["status"] == "completed" and approved["approved_by"] == "operator:finance-op"
    assert approved["approved_at"].endswith("Z") and approved["credits_added"] == credits
    assert approved["activated"] == ["subscription"] and approved["invoice"]["status"] == "paid"

    # what the tenant sees
    assert ok(client.get("/v1/credits", headers=t.headers))["balance"] == before + credits
    purchase = ok(client.get("/v1/credits/transactions", headers=t.headers))["items"][-1]
    assert purchase["transaction_type"] == "purchase" and purchase["amount"] == credits
    seen = ok(client.get(f"/v1/billing/payments/{payment['id']}", headers=t.headers))
    assert seen["status"] == "completed" and seen["invoice"]["paid_at"].endswith("Z")
    with rt_engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM subscriptions WHERE account_id = :a"),
                            {"a": t.account_id}).scalar() == "active"
    notes = ok(client.get(f"/v1/admin/accounts/{t.account_id}/notifications", headers=staff["support"]))["items"]
    assert [n["event"] for n in notes] == ["payment.approved"] and notes[0]["status"] == "queued"
    assert payment["invoice"]["number"] in notes[0]["subject"] and f"{credits} credits" in notes[0]["body"]
    audit = ok(client.get("/v1/admin/audit", params={"account_id": t.account_id}, headers=staff["admin"]))["items"]
    assert [(a["action"], a["actor"]) for a in audit] == [("payment.approve", "operator:finance-op")]

    # approving again changes nothing; rejecting an approved payment is a conflict
    again = ok(client.post(f"/v1/admin/payments/{payment['id']}/approve", headers=staff["admin"]))
    assert again["replayed"] is True and again["approved_by"] == "operator:finance-op"
    assert ok(client.get("/v1/credits", headers=t.headers))["balance"] == before + credits
    error(client.post(f"/v1/admin/payments/{payment['id']}/reject", headers=staff["admin"],
                      json={"reason": "late"}), 409, "conflict")


def test_suspended_account_is_reactivated_by_an_approved_payment(client, rt_engine, staff):
    t = new_tenant(rt_engine, "pro")
    payment = manual_payment(client, t)
    ok(client.post(f"/v1/admin/accounts/{t.account_id}/suspend", headers=staff["support"]))
    error(client.get("/v1/account", headers=t.headers), 403, "account_suspended")
    approved = ok(client.post(f"/v1/admin/payments/{payment['id']}/approve", headers=staff["admin"]))
    assert approved["activated"] == ["account"]
    assert client.get("/v1/account", headers=t.headers).status_code == 200


def test_concurrent_approvals_credit_once(live_server, client, rt_engine, staff):
    t = new_tenant(rt_engine, "pro")
    before = ok(client.get("/v1/credits", headers=t.headers))["balance"]
    payment = manual_payment(client, t)
    barrier = threading.Barrier(10)

    def approve(i: int):
        barrier.wait()
        headers = staff["finance"] if i % 2 else staff["admin"]
        r = httpx.post(f"{live_server.url}/v1/admin/payments/{payment['id']}/approve", headers=headers, timeout=60)
        return r.status_code, r.json()

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(approve, range(10)))
    assert {s for s, _ in results} == {200}
    assert [b["replayed"] for _, b in results].count(False) == 1
    pack = package(client)
    assert ok(client.get("/v1/credits", headers=t.headers))["balance"] == before + pack["credits"] + pack["bonus_credits"]
    purchases = [i for i in ok(client.get("/v1/credits/transactions", headers=t.headers))["items"]
                 if i["transaction_type"] == "purchase"]
    assert len(purchases) == 1
    assert len(ok(client.get(f"/v1/admin/accounts/{t.account_id}/notifications", headers=staff["admin"]))["items"]) == 1


def test_reject_adds_no_credits(client, rt_engine, staff):
    t = new_tenant(rt_engine, "pro")
    before = ok(client.get("/v1/credits", headers=t.headers))["balance"]
    payment = manual_payment(client, t)
    error(client.post(f"/v1/admin/payments/{payment['id']}/reject", headers=staff["finance"], json={}),
          422, "validation_error")
    rejected = ok(client.post(f"/v1/admin/payments/{payment['id']}/reject", headers=staff["finance"],
                              json={"reason": "no transfer received"}))
    assert rejected["status"] == "failed" and rejected["failure_reason"] == "no transfer received"
    assert ok(client.get("/v1/credits", headers=t.headers))["balance"] == before
    error(client.post(f"/v1/admin/payments/{payment['id']}/approve", headers=staff["finance"]), 409, "conflict")
    assert ok(client.get("/v1/credits", headers=t.headers))["balance"] == before
    assert ok(client.get(f"/v1/billing/payments/{payment['id']}", headers=t.headers))["status"] == "failed"


def test_manual_payment_needs_an_active_bank_transfer_and_a_big_enough_package(client, rt_engine):
    from sqlalchemy import text

    t = new_tenant(rt_engine, "pro")
    error(client.post("/v1/billing/manual-payments", headers=t.headers, json={"credit_package": "credits-1k"}),
          422, "validation_error")
    error(client.post("/v1/billing/manual-payments", headers=t.headers, json={"credit_package": "nope"}),
          404, "not_found")
    with rt_engine.begin() as conn:
        conn.execute(text("UPDATE payment_method_configs SET is_active = false WHERE provider = 'bank_transfer'"))
    try:
        error(client.post("/v1/billing/manual-payments", headers=t.headers, json={"credit_package": PACKAGE}),
              409, "payment_method_unavailable")
    finally:
        with rt_engine.begin() as conn:
            conn.execute(text("UPDATE payment_method_configs SET is_active = true WHERE provider = 'bank_transfer'"))


# --- CLI -------------------------------------------------------------------------------------------


def cli(url: str, *args: str):
    from control_plane.cli.main import main

    result = CliRunner().invoke(main, [*args, "--database-url", url])
    return result


def test_cli_keys_rotate_and_a_revoked_key_answers_401(client, rt_engine, rt_url):
    t = new_tenant(rt_engine, "pro")
    created = cli(rt_url, "accounts", "keys", "create", t.account_id, "--name", "rotated")
    assert created.exit_code == 0, created.output
    new_key = json.loads(created.output)["api_key"]
    assert client.get("/v1/account", headers={"Authorization": f"Bearer {new_key}"}).status_code == 200
    listed = json.loads(cli(rt_url, "accounts", "keys", "list", t.account_id, "--format", "json").output)
    old = [k for k in listed if k["name"] != "rotated"][0]
    assert len(listed) == 2 and all(new_key not in json.dumps(k) for k in listed)
    assert client.get("/v1/account", headers=t.headers).status_code == 200
    revoked = cli(rt_url, "accounts", "keys", "revoke", old["id"], "--format", "json")
    assert revoked.exit_code == 0 and json.loads(revoked.output)["revoked_at"].endswith("Z")
    error(client.get("/v1/account", headers=t.headers), 401, "unauthorized")
    assert client.get("/v1/account", headers={"Authorization": f"Bearer {new_key}"}).status_code == 200


def test_cli_accounts_and_payments(client, rt_engine, rt_url):
    t = new_tenant(rt_engine, "pro", name="Cli Payments Co")
    listed = json.loads(cli(rt_url, "accounts", "list", "--search", "cli payments", "--format", "json").output)
    assert [a["id"] for a in listed] == [t.account_id]
    assert cli(rt_url, "accounts", "suspend", t.account_id).exit_code == 0
    error(client.get("/v1/account", headers=t.headers), 403, "account_suspended")
    assert cli(rt_url, "accounts", "activate", t.account_id).exit_code == 0
    assert client.get("/v1/account", headers=t.headers).status_code == 200

    first, second = manual_payment(client, t, "A"), manual_payment(client, t, "B")
    pending = json.loads(cli(rt_url, "payments", "list", "--status", "pending", "--account", t.account_id,
                             "--format", "json").output)
    assert {p["id"] for p in pending} == {first["id"], second["id"]}
    approved = cli(rt_url, "payments", "approve", first["id"], "--format", "json")
    assert approved.exit_code == 0, approved.output
    assert json.loads(approved.output)["approved_by"].startswith("cli:")
    rejected = cli(rt_url, "payments", "reject", second["id"], "--reason", "bounced", "--format", "json")
    assert json.loads(rejected.output)["status"] == "failed"
    bad = cli(rt_url, "payments", "approve", second["id"])
    assert bad.exit_code == 1 and "conflict" in bad.output and "Traceback" not in bad.output
    created = cli(rt_url, "operators", "create", "--name", "Ann", "--role", "finance")
    made = json.loads(created.output)
    assert made["role"] == "finance" and made["operator_key"].startswith("cpo_")
    assert client.get("/v1/admin/payments", headers={"Authorization": f"Bearer {made['operator_key']}"}
                      ).status_code == 200


def test_staff_commands_are_registered():
    from control_plane.cli.main import main

    runner = CliRunner()
    for args in (["operators", "create"], ["payments", "list"], ["payments", "approve"], ["payments", "reject"],
                 ["accounts", "list"], ["accounts", "suspend"], ["accounts", "activate"], ["accounts", "keys", "create"],
                 ["accounts", "keys", "list"], ["accounts", "keys", "revoke"]):
        result = runner.invoke(main, [*args, "--help"])
        assert result.exit_code == 0 and "--database-url" in result.output, args
    missing_role = runner.invoke(main, ["operators", "create", "--name", "x", "--role", "root"])
    assert missing_role.exit_code != 0 and "admin" in missing_role.output
