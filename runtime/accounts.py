"""Creating a tenant account (`cplane accounts create`)."""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from control_plane.db.models import (
    Account,
    APIKey,
    CreditBalance,
    CreditTransaction,
    ModuleEnableSettings,
    Plan,
    Role,
    Subscription,
    User,
)
from control_plane.errors import CplaneError
from runtime.auth import generate_key
from runtime.billing import PERIOD, allowances
from runtime.billing import today as billing_today
from runtime.resolve import default_modules

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:80] or "account"
    return f"{slug}-{secrets.token_hex(3)}"


def create_account(engine: Engine, *, name: str, plan: str, owner_email: str,
                   key_name: str = "default") -> dict[str, str]:
    """Create the account, its owner, balance, subscription, module settings and an API key.

    Returns {"account_id", "api_key"}; the key is not stored and cannot be shown again.
    """
    name = name.strip()
    if not name:
        raise CplaneError("--name must not be empty")
    if len(name) > 255:
        raise CplaneError("--name is longer than 255 characters")
    owner_email = owner_email.strip().lower()
    if not EMAIL_RE.match(owner_email) or len(owner_email) > 254:
        raise CplaneError(f"--owner-email {owner_email!r} is not an e-mail address")

    with Session(engine) as session, session.begin():
        plan_row = session.scalars(select(Plan).where(Plan.slug == plan)).first()
        if plan_row is None:
            known = session.scalars(select(Plan.slug).where(Plan.is_active).order_by(Plan.sort_order)).all()
            hint = f"; active plans: {', '.join(known)}" if known else "; no plans in the database (run `cplane apply`)"
            raise CplaneError(f"unknown plan {plan!r}{hint}")
        if not plan_row.is_active:
            raise CplaneError(f"plan {plan!r} is not active")
        if session.scalars(select(User.id).where(User.email == owner_email)).first() is not None:
            raise CplaneError(f"a user with e-mail {owner_email!r} already exists")

        now = datetime.now(UTC)
        account = Account(id=uuid.uuid4(), name=name, slug=_slugify(name), plan_id=plan_row.id,
                          status="active", is_active=True, billing_email=owner_email)
        session.add(account)
        session.flush()
        role_id = session.scalars(select(Role.id).where(Role.slug == "owner")).first()
        owner = User(id=uuid.uuid4(), account_id=account.id, email=owner_email, role_id=role_id)
        session.add(owner)
        session.flush()
        account.owner_id = owner.id

        today = billing_today()
        session.add(CreditBalance(
            account_id=account.id,
            balance=plan_row.monthly_credits,
            idea_credits=plan_row.idea_credits,
            content_credits=plan_row.content_credits,
            image_credits=plan_row.image_credits,
            optimization_credits=plan_row.optimization_credits,
            period_start=today,
            period_end=today + PERIOD,
        ))
        session.add(CreditTransaction(
            account_id=account.id, amount=plan_row.monthly_credits, balance_after=plan_row.monthly_credits,
            transaction_type="grant", description=f"plan {plan_row.slug}: monthly allowance",
            pools={p: n for p, n in allowances(plan_row).items() if n},
        ))
        session.add(Subscription(account_id=account.id, plan_id=plan_row.id, status="active",
                                 billing_cycle="monthly", current_period_start=now,
                                 current_period_end=now + timedelta(days=30)))
        modules = default_modules(session)
        session.add(ModuleEnableSettings(account_id=account.id,
                                         **{f"{m}_enabled": enabled for m, enabled in modules.items()}))
        key, prefix, key_hash = generate_key()
        session.add(APIKey(account_id=account.id, user_id=owner.id, name=key_name, prefix=prefix,
                           key_hash=key_hash))
        try:
            session.flush()
        except IntegrityError as exc:
            raise CplaneError(f"could not create the account: {str(exc.orig).splitlines()[0]}") from None
        return {"account_id": str(account.id), "api_key": key}


def create_api_key(engine: Engine, account_id: uuid.UUID, *, name: str = "", expires_at: datetime | None = None,
                   ) -> str:
    """A further key for an existing account (used by tests and operators)."""
    key, prefix, key_hash = generate_key()
    with Session(engine) as session, session.begin():
        session.add(APIKey(account_id=account_id, name=name, prefix=prefix, key_hash=key_hash,
                           expires_at=expires_at))
    return key
