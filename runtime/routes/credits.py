"""Credits: balance, ledger, and metered consumption."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from control_plane.db.models import CreditBalance, CreditCostConfig, CreditTransaction, CreditUsageLog
from runtime.auth import Tenant, tenant_dep
from runtime.errors import TENANT, ApiError, responses
from runtime.pagination import DEFAULT_LIMIT, MAX_LIMIT, list_model, page

router = APIRouter(prefix="/v1/credits", tags=["credits"])

MAX_CHARGE = 2_000_000_000


class BalanceOut(BaseModel):
    balance: int = Field(description="General credits available.")
    idea_credits: int
    content_credits: int
    image_credits: int
    optimization_credits: int
    period_start: date | None
    period_end: date | None


class TransactionOut(BaseModel):
    id: uuid.UUID
    amount: int = Field(description="Negative for charges.")
    balance_after: int
    transaction_type: str
    operation: str | None
    description: str
    idempotency_key: str | None
    created_at: datetime


TransactionList = list_model("TransactionList", TransactionOut)


class ConsumeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    operation: str = Field(min_length=1, max_length=100, description="A metered operation (see /v1/catalog/credit-costs).")
    quantity: int = Field(1, ge=1, le=1_000_000, description="Units of the operation's `unit`.")
    idempotency_key: str = Field(min_length=1, max_length=200,
                                 description="Retrying with the same key returns the first result and charges once.")


class ConsumeOut(BaseModel):
    balance: int = Field(description="Balance right after this charge.")
    charged: int
    transaction_id: uuid.UUID
    replayed: bool = Field(False, description="True when this answer repeats an earlier request with the same key.")


def _balance_row(session: Session, account_id: uuid.UUID) -> CreditBalance | None:
    return session.scalars(select(CreditBalance).where(CreditBalance.account_id == account_id)).first()


@router.get("", response_model=BalanceOut, responses=TENANT, summary="Credit balance")
def get_balance(tenant: Tenant = Depends(tenant_dep)):
    row = _balance_row(tenant.session, tenant.account_id)
    if row is None:
        return BalanceOut(balance=0, idea_credits=0, content_credits=0, image_credits=0, optimization_credits=0,
                          period_start=None, period_end=None)
    return BalanceOut.model_validate(row, from_attributes=True)


@router.get("/transactions", response_model=TransactionList, responses=TENANT, summary="Credit ledger, oldest first")
def list_transactions(limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
                      cursor: str | None = Query(None, max_length=500),
                      tenant: Tenant = Depends(tenant_dep)):
    stmt = select(CreditTransaction).where(CreditTransaction.account_id == tenant.account_id)
    rows, nxt = page(tenant.session, stmt, CreditTransaction, limit, cursor)
    return {"items": [TransactionOut.model_validate(r, from_attributes=True) for r in rows], "next": nxt}


def _describe(body: ConsumeIn) -> str:
    return f"{body.operation} x{body.quantity}"


def _replay(session: Session, account_id: uuid.UUID, body: ConsumeIn) -> ConsumeOut | None:
    row = session.execute(
        select(CreditTransaction.id, CreditTransaction.amount, CreditTransaction.balance_after,
               CreditTransaction.operation, CreditTransaction.description)
        .where(CreditTransaction.account_id == account_id,
               CreditTransaction.idempotency_key == body.idempotency_key)
    ).first()
    if row is None:
        return None
    if row.operation != body.operation or row.description != _describe(body):
        raise ApiError(409, "idempotency_key_reused",
                       "this idempotency_key was already used for a different operation or quantity")
    return ConsumeOut(balance=row.balance_after, charged=-row.amount, transaction_id=row.id, replayed=True)


@router.post("/consume", response_model=ConsumeOut, responses={**TENANT, **responses(402)},
             summary="Charge the configured cost of an operation times the quantity")
def consume(body: ConsumeIn, tenant: Tenant = Depends(tenant_dep)):
    session = tenant.session
    account_id = tenant.account_id
    session.rollback()  # start clean: authentication may have left a transaction open

    previous = _replay(session, account_id, body)
    if previous is not None:
        return previous
    cost = session.execute(
        select(CreditCostConfig.credits, CreditCostConfig.credit_type)
        .where(CreditCostConfig.operation == body.operation, CreditCostConfig.is_active)
    ).first()
    if cost is None:
        raise ApiError(422, "unknown_operation", f"unknown operation {body.operation!r}")
    charge = int(cost.credits) * body.quantity
    if charge > MAX_CHARGE:
        raise ApiError(422, "validation_error", "quantity too large")

    balance = session.scalar(
        update(CreditBalance)
        .where(CreditBalance.account_id == account_id, CreditBalance.balance >= charge)
        .values(balance=CreditBalance.balance - charge)
        .returning(CreditBalance.balance)
    )
    if balance is None:
        session.rollback()
        current = session.scalar(select(CreditBalance.balance).where(CreditBalance.account_id == account_id)) or 0
        raise ApiError(402, "insufficient_credits",
                       f"{body.operation} x{body.quantity} costs {charge} credits; the balance is {current}")
    transaction_id = uuid.uuid4()
    try:
        session.execute(insert(CreditTransaction).values(
            id=transaction_id, account_id=account_id, amount=-charge, balance_after=balance,
            transaction_type="charge", operation=body.operation, idempotency_key=body.idempotency_key,
            description=_describe(body),
        ))
        session.execute(insert(CreditUsageLog).values(
            id=uuid.uuid4(), account_id=account_id, transaction_id=transaction_id, operation=body.operation,
            credit_type=cost.credit_type, quantity=body.quantity, credits_used=charge,
        ))
        session.commit()
    except IntegrityError:
        # A concurrent request with the same key committed first: undo ours, answer with theirs.
        session.rollback()
        previous = _replay(session, account_id, body)
        if previous is None:
            raise
        return previous
    return ConsumeOut(balance=balance, charged=charge, transaction_id=transaction_id)
