"""Credits: balance, ledger, and metered consumption."""

from __future__ import annotations

import uuid
from datetime import date

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from control_plane.db.models import CreditCostConfig, CreditTransaction, CreditUsageLog
from runtime.auth import Tenant, tenant_dep
from runtime.billing import POOLS, apply_draw, locked_balance, plan_draw, pools_view
from runtime.errors import TENANT, ApiError, responses
from runtime.pagination import DEFAULT_LIMIT, MAX_LIMIT, list_model, page
from runtime.resolve import account_and_plan
from runtime.timefmt import Timestamp

router = APIRouter(prefix="/v1/credits", tags=["credits"])

MAX_CHARGE = 2_000_000_000


class PoolOut(BaseModel):
    pool: str = Field(description="`general` or a typed pool: `idea`, `content`, `image`, `optimization`.")
    available: int
    allowance: int | None = Field(description="Granted each billing period (typed pools; null for general).")


class BalanceOut(BaseModel):
    balance: int = Field(description="General credits available (plan monthly credits, purchases, grants).")
    idea_credits: int = Field(description="Left in the idea pool this period.")
    content_credits: int
    image_credits: int
    optimization_credits: int
    period_start: date | None
    period_end: date | None = Field(description="First day of the next period, when typed pools are reset.")
    pools: list[PoolOut] = Field(description="Every pool: general first, then the typed ones.")


class TransactionOut(BaseModel):
    id: uuid.UUID
    amount: int = Field(description="Change of the general balance; negative for charges.")
    balance_after: int = Field(description="General balance after this entry.")
    pools: dict[str, int] = Field(description="Change of each typed pool, e.g. `{\"content\": -10}`.")
    transaction_type: str
    operation: str | None
    description: str
    idempotency_key: str | None
    created_at: Timestamp


TransactionList = list_model("TransactionList", TransactionOut)


class ConsumeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    operation: str = Field(min_length=1, max_length=100, description="A metered operation (see /v1/catalog/credit-costs).")
    quantity: int = Field(1, ge=1, le=1_000_000, description="Units of the operation's `unit`.")
    idempotency_key: str = Field(min_length=1, max_length=200,
                                 description="Retrying with the same key returns the first result and charges once.")


class ConsumeOut(BaseModel):
    balance: int = Field(description="General balance right after this charge.")
    charged: int = Field(description="Credits charged in all (typed pool + general).")
    pool: str = Field(description="The operation's credit type: its pool pays first (`general`: only the balance).")
    charged_from_pool: int = Field(0, description="Part paid by the operation's typed pool.")
    charged_from_balance: int = Field(0, description="Part paid by the general balance.")
    pool_balance: int | None = Field(None, description="The typed pool right after this charge.")
    transaction_id: uuid.UUID
    replayed: bool = Field(False, description="True when this answer repeats an earlier request with the same key.")


@router.get("", response_model=BalanceOut, responses=TENANT, summary="Credit balance of every pool",
            operation_id="getCredits")
def get_balance(tenant: Tenant = Depends(tenant_dep)):
    session = tenant.session
    session.rollback()
    row = locked_balance(session, tenant.account_id)  # starts the period when the last one is over
    session.commit()
    _account, plan = account_and_plan(session, tenant.account_id)
    return BalanceOut(balance=row.balance, period_start=row.period_start, period_end=row.period_end,
                      pools=pools_view(row, plan),
                      **{f"{p}_credits": getattr(row, f"{p}_credits") for p in POOLS})


@router.get("/transactions", response_model=TransactionList, responses=TENANT, summary="Credit ledger, oldest first",
            operation_id="listCreditTransactions")
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
               CreditTransaction.operation, CreditTransaction.description, CreditTransaction.pools)
        .where(CreditTransaction.account_id == account_id,
               CreditTransaction.idempotency_key == body.idempotency_key)
    ).first()
    if row is None:
        return None
    if row.operation != body.operation or row.description != _describe(body):
        raise ApiError(409, "idempotency_key_reused",
                       "this idempotency_key was already used for a different operation or quantity")
    from_pool = -sum((row.pools or {}).values())
    pool = next(iter(row.pools), None) if row.pools else None
    return ConsumeOut(balance=row.balance_after, charged=from_pool - row.amount, pool=pool or "general",
                      charged_from_pool=from_pool, charged_from_balance=-row.amount, transaction_id=row.id,
                      replayed=True)


@router.post("/consume", response_model=ConsumeOut, responses={**TENANT, **responses(402)},
             summary="Charge the configured cost of an operation times the quantity", operation_id="consumeCredits")
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

    row = locked_balance(session, account_id)
    draw = plan_draw(row, cost.credit_type, charge)
    if draw is None:
        pool = cost.credit_type if cost.credit_type in POOLS else None
        left = f"the {pool} pool has {getattr(row, f'{pool}_credits')} and " if pool else ""
        session.rollback()
        raise ApiError(402, "insufficient_credits",
                       f"{body.operation} x{body.quantity} costs {charge} credits; {left}the balance is {row.balance}")
    pools = apply_draw(row, draw)
    balance = row.balance
    transaction_id = uuid.uuid4()
    try:
        session.execute(insert(CreditTransaction).values(
            id=transaction_id, account_id=account_id, amount=-draw.from_balance, balance_after=balance, pools=pools,
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
    return ConsumeOut(balance=balance, charged=charge, pool=cost.credit_type, charged_from_pool=draw.from_pool,
                      charged_from_balance=draw.from_balance,
                      pool_balance=getattr(row, f"{draw.pool}_credits") if draw.pool else None,
                      transaction_id=transaction_id)
