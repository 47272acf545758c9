"""Credit pools and their billing periods, shared by the tenant routes, `/v1/admin` and the CLI.

An account's credits live in one `credit_balances` row: the general `balance` (plan monthly
credits, purchases, staff grants) and one typed pool per plan allowance (`idea_credits`, ...).
Every change locks that row (SELECT ... FOR UPDATE) and writes one ledger entry whose `amount` /
`balance_after` are the general balance and whose `pools` are the typed pools' deltas, so that
the balance is the sum of the amounts and each pool the sum of its deltas.

Billing periods are 30 days. The first request of an account after its period ended starts the
next one, under the row lock: the typed pools are reset to the plan's allowances (what was left
expires) and the plan's monthly credits are added to the general balance. Concurrent requests
wait for the lock and then see the new period, so a period is granted exactly once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.db.models import Account, CreditBalance, CreditTransaction, Plan

POOLS: tuple[str, ...] = ("idea", "content", "image", "optimization")
PERIOD = timedelta(days=30)


def today() -> date:
    return datetime.now(UTC).date()


def pool_column(pool: str) -> str:
    return f"{pool}_credits"


def allowances(plan: Plan | None) -> dict[str, int]:
    return {p: int(getattr(plan, pool_column(p)) or 0) if plan is not None else 0 for p in POOLS}


def locked_balance(session: Session, account_id: uuid.UUID) -> CreditBalance:
    """The account's balance row, locked for this transaction, in its current period."""
    row = session.scalars(
        select(CreditBalance).where(CreditBalance.account_id == account_id).with_for_update()
    ).first()
    if row is None:
        row = CreditBalance(id=uuid.uuid4(), account_id=account_id, balance=0, period_start=None, period_end=None,
                            **{pool_column(p): 0 for p in POOLS})
        session.add(row)
        session.flush()
    start_period_if_due(session, row)
    return row


def start_period_if_due(session: Session, row: CreditBalance, on: date | None = None) -> bool:
    """Start the period `on` falls in when the row's period is over (the row must be locked)."""
    on = on or today()
    if row.period_end is not None and on < row.period_end:
        return False
    start = row.period_end or on
    while start + PERIOD <= on:
        start += PERIOD
    plan = session.scalars(
        select(Plan).join(Account, Account.plan_id == Plan.id).where(Account.id == row.account_id)
    ).first()
    grant = allowances(plan)
    monthly = int(plan.monthly_credits or 0) if plan is not None else 0
    deltas = {p: grant[p] - int(getattr(row, pool_column(p)) or 0) for p in POOLS}
    for p in POOLS:
        setattr(row, pool_column(p), grant[p])
    row.balance = int(row.balance or 0) + monthly
    row.period_start, row.period_end = start, start + PERIOD
    session.add(CreditTransaction(
        id=uuid.uuid4(), account_id=row.account_id, amount=monthly, balance_after=row.balance,
        transaction_type="grant", pools={p: d for p, d in deltas.items() if d},
        description=f"period {start.isoformat()}: plan {plan.slug if plan else '(none)'} allowances "
                    "(unused typed credits of the previous period expire)",
    ))
    session.flush()
    return True


@dataclass
class Draw:
    pool: str | None  # the typed pool drawn from first (None for a general operation)
    from_pool: int
    from_balance: int

    @property
    def total(self) -> int:
        return self.from_pool + self.from_balance


def plan_draw(row: CreditBalance, credit_type: str, charge: int) -> Draw | None:
    """How `charge` is paid: the operation's typed pool first, then the general balance; None when
    both together fall short."""
    pool = credit_type if credit_type in POOLS else None
    available = int(getattr(row, pool_column(pool)) or 0) if pool else 0
    from_pool = min(available, charge)
    rest = charge - from_pool
    if rest > int(row.balance or 0):
        return None
    return Draw(pool, from_pool, rest)


def apply_draw(row: CreditBalance, draw: Draw) -> dict[str, int]:
    if draw.pool and draw.from_pool:
        setattr(row, pool_column(draw.pool), int(getattr(row, pool_column(draw.pool))) - draw.from_pool)
    row.balance = int(row.balance) - draw.from_balance
    return {draw.pool: -draw.from_pool} if draw.pool and draw.from_pool else {}


def pools_view(row: CreditBalance | None, plan: Plan | None) -> list[dict[str, object]]:
    grant = allowances(plan)
    items: list[dict[str, object]] = [
        {"pool": "general", "available": int(row.balance) if row else 0, "allowance": None}
    ]
    items += [{"pool": p, "available": int(getattr(row, pool_column(p))) if row else 0, "allowance": grant[p]}
              for p in POOLS]
    return items
