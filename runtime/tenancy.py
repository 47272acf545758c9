"""Tenant sessions: every query of a tenant request is scoped to its account by construction.

Two lines, both installed on the app's sessionmaker by `configure()`:

1. Application level (every backend; the only line on SQLite): once `enter()` has named the
   account, every ORM SELECT, UPDATE and DELETE of the session gets `account_id = <account>`
   (`accounts`: `id`; mixed tables: or `account_id IS NULL` for reading) on each tenant model it
   touches, joins and subqueries included (SQLAlchemy `with_loader_criteria` from a
   `do_orm_execute` hook). A route cannot build an unscoped select of a tenant table.
2. PostgreSQL: each transaction of the session, after authentication, runs as role
   `cplane_runtime` with `cplane.account_id` set (`SET LOCAL`, control_plane/db/tenancy.py), so the
   row-level security policies show and accept the account's rows only; a transaction that has
   not set it sees no tenant row at all.

Authentication itself (the API key lookup by prefix and its last-used touch) runs before
`enter()`, as the connecting role: the key decides the account, so it cannot be read under it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Table, event, or_, text
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker, with_loader_criteria
from sqlalchemy.sql.util import find_tables

from control_plane.db.models import Account, Base
from control_plane.db.tenancy import enter_statement

ACCOUNT_KEY = "cplane_tenant_account_id"
# Mixed tables: rows with account_id NULL are system rows every tenant may read.
MIXED_TABLES = frozenset({"seed_keywords", "ai_integration_settings"})


def _criteria_for(cls: type) -> Callable[[Any], Callable[[type], Any]] | None:
    table = getattr(cls, "__table__", None)
    if table is None:
        return None
    if cls is Account:
        return lambda account: (lambda c: c.id == account)
    if "account_id" not in table.c:
        return None
    if table.name in MIXED_TABLES:
        return lambda account: (lambda c: or_(c.account_id.is_(None), c.account_id == account))
    return lambda account: (lambda c: c.account_id == account)


def tenant_models() -> dict[type, Callable[[Any], Callable[[type], Any]]]:
    """Every mapped class that belongs to an account, with its criteria factory."""
    found = {}
    for mapper in Base.registry.mappers:
        factory = _criteria_for(mapper.class_)
        if factory is not None:
            found[mapper.class_] = factory
    return found


TENANT_MODELS = tenant_models()
_ENTER = text(enter_statement())


def _options(account: uuid.UUID) -> dict[str, Any]:
    """table name -> the loader criteria of its model for `account`."""
    return {cls.__table__.name: with_loader_criteria(cls, factory(account), include_aliases=True)
            for cls, factory in TENANT_MODELS.items()}


def _scope(state: ORMExecuteState) -> None:
    scoped = state.session.info.get(ACCOUNT_KEY)
    if scoped is None or not (state.is_select or state.is_update or state.is_delete):
        return
    if state.is_column_load or state.is_relationship_load:
        return  # lazy loads and refreshes of rows the scoped queries already returned
    # Only the criteria of the tenant tables the statement names (joins and subqueries included):
    # attaching all of them to every statement costs more than the query on a small request.
    options = scoped[1]
    found = [options[t.name] for t in find_tables(state.statement, check_columns=True, include_aliases=True,
                                                  include_joins=True)
             if isinstance(t, Table) and t.name in options]
    if found:
        state.statement = state.statement.options(*dict.fromkeys(found))


def _enter_transaction(session: Session, _transaction, connection) -> None:
    scoped = session.info.get(ACCOUNT_KEY)
    if scoped is not None and connection.dialect.name == "postgresql":
        connection.execute(_ENTER, {"account": str(scoped[0])})


def configure(maker: sessionmaker) -> sessionmaker:
    """Install both lines on the sessions of `maker` (they act once `enter()` names the account)."""
    event.listen(maker, "do_orm_execute", _scope)
    event.listen(maker, "after_begin", _enter_transaction)
    return maker


def enter(session: Session, account_id: uuid.UUID) -> None:
    """From now on the session serves `account_id` only (this transaction too, if one is open)."""
    session.info[ACCOUNT_KEY] = (account_id, _options(account_id))
    if session.in_transaction() and session.get_bind().dialect.name == "postgresql":
        session.connection().execute(_ENTER, {"account": str(account_id)})


def account_of(session: Session) -> uuid.UUID | None:
    scoped = session.info.get(ACCOUNT_KEY)
    return scoped[0] if scoped is not None else None
