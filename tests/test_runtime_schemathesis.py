"""Property-based run of the whole OpenAPI document with a valid tenant key: no 5xx, and every
response (status code, content type, headers, body) conforms to the schema."""

from __future__ import annotations

import time

import schemathesis
from helpers import new_tenant
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
MAX_EXAMPLES = 10


def test_openapi_conformance(rt_app, rt_engine):
    tenant = new_tenant(rt_engine, "enterprise")
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

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc).strip()[:1500]}")
    assert operations >= 60
    assert not failures, "\n\n".join(failures)
    print("schemathesis statuses:", sorted(statuses.items()))
    assert statuses.get(200, 0) + statuses.get(201, 0) > operations  # not only refusals
    assert time.monotonic() - started < 120
