"""Property-based run of the whole OpenAPI document with a valid tenant key: no 5xx, and every
response (status code, content type, headers, body) conforms to the schema. A second tenant's
objects exist beside it: no response ever carries one of their ids, and none of them changes."""

from __future__ import annotations

import time

import schemathesis
from fastapi.testclient import TestClient
from helpers import new_tenant, ok
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import text

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
MAX_EXAMPLES = 10


def _other_rows(engine, account_id: str) -> dict[str, list]:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT * FROM {t} WHERE account_id = :a ORDER BY id"), {"a": account_id}).all()
                for t in ("sites", "sectors", "keywords", "users", "credit_balances", "credit_transactions")}


def test_openapi_conformance(rt_app, rt_engine):
    tenant = new_tenant(rt_engine, "enterprise")
    other = new_tenant(rt_engine, "enterprise", "The other tenant")
    with TestClient(rt_app) as c:
        site = ok(c.post("/v1/sites", json={"name": "other site"}, headers=other.headers), 201)
        sector = ok(c.post(f"/v1/sites/{site['id']}/sectors", json={"name": "other sector"}, headers=other.headers), 201)
        keyword = ok(c.post("/v1/keywords", json={"site_id": site["id"], "keyword": "other"}, headers=other.headers), 201)
    secrets = {other.account_id, site["id"], sector["id"], keyword["id"]}
    before = _other_rows(rt_engine, other.account_id)
    schema = schemathesis.openapi.from_asgi("/openapi.json", rt_app)
    failures: list[str] = []
    operations = 0
    statuses: dict[int, int] = {}
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True, database=None)
        def run(case):
            response = case.call_and_validate(headers=tenant.headers, checks=CHECKS)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            leaked = [s for s in secrets if s in response.text]
            assert not leaked, f"the other tenant's ids in the answer: {leaked}"

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc).strip()[:1500]}")
    assert operations >= 60
    assert not failures, "\n\n".join(failures)
    assert _other_rows(rt_engine, other.account_id) == before
    print("schemathesis statuses:", sorted(statuses.items()))
    assert statuses.get(200, 0) + statuses.get(201, 0) > operations  # not only refusals
    assert time.monotonic() - started < 120
