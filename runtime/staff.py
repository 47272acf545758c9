"""What staff do, shared by `/v1/admin` and the CLI: operator keys, account lifecycle, API keys,
credit adjustments and the manual-payment workflow (bank transfer).

Every function takes a session and an `Actor` and leaves committing to the caller's `with
session.begin()`; each action writes an audit entry (who, when, what) in the same transaction.

Approving a payment is one conditional UPDATE ... WHERE status = 'pending': of two operators who
click at the same time, one moves the payment to `completed` and does every side effect in that
transaction; the other's UPDATE waits for the row, finds it no longer pending and answers with the
payment as it is (nothing credited twice).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from control_plane.db.models import (
    Account,
    APIKey,
    AuditLog,
    CreditPackage,
    CreditTransaction,
    Invoice,
    NotificationConfig,
    NotificationOutbox,
    Operator,
    Payment,
    PaymentMethodConfig,
    Plan,
    Subscription,
    User,
)
from runtime.auth import OPERATOR_KEY_PREFIX, ROLES, generate_key
from runtime.billing import PERIOD, locked_balance
from runtime.errors import ApiError, not_found
from runtime.timefmt import rfc3339

APPROVED_EVENT = "payment.approved"
PRODUCT_NAME = "cplane"


@dataclass(frozen=True)
class Actor:
    """Who acts: an operator (API) or a shell user (CLI)."""

    label: str
    operator_id: uuid.UUID | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def audit(session: Session, actor: Actor, action: str, object_type: str, object_id: Any,
          account_id: uuid.UUID | None, changes: dict[str, Any]) -> None:
    session.add(AuditLog(id=uuid.uuid4(), account_id=account_id, operator_id=actor.operator_id, action=action,
                         object_type=object_type, object_id=str(object_id),
                         changes={"actor": actor.label, **changes}))


# --- operators -----------------------------------------------------------------------------------


def create_operator(engine: Engine, *, name: str, role: str) -> dict[str, str]:
    name = name.strip()
    if not name or len(name) > 200:
        raise ApiError(422, "validation_error", "the operator name must be 1 to 200 characters")
    if role not in ROLES:
        raise ApiError(422, "validation_error", f"role must be one of {', '.join(ROLES)}")
    key, prefix, key_hash = generate_key(OPERATOR_KEY_PREFIX)
    operator_id = uuid.uuid4()
    with Session(engine) as session, session.begin():
        session.add(Operator(id=operator_id, name=name, role=role, prefix=prefix, key_hash=key_hash))
    return {"operator_id": str(operator_id), "name": name, "role": role, "operator_key": key}


# --- accounts ------------------------------------------------------------------------------------


def account_view(session: Session, account: Account) -> dict[str, Any]:
    plan = session.get(Plan, account.plan_id) if account.plan_id is not None else None
    owner = session.get(User, account.owner_id) if account.owner_id is not None else None
    from control_plane.db.models import CreditBalance

    balance = session.scalars(select(CreditBalance.balance).where(CreditBalance.account_id == account.id)).first()
    return {"id": str(account.id), "name": account.name, "status": account.status,
            "plan": plan.slug if plan else None, "owner_email": owner.email if owner else None,
            "balance": int(balance or 0), "created_at": rfc3339(account.created_at)}


def list_accounts(session: Session, *, search: str | None = None, status: str | None = None,
                  plan: str | None = None, email: str | None = None, limit: int = 50,
                  offset: int = 0) -> list[dict[str, Any]]:
    stmt = select(Account).outerjoin(Plan, Plan.id == Account.plan_id).outerjoin(User, User.id == Account.owner_id)
    if search:
        pattern = f"%{search.lower()}%"
        stmt = stmt.where(or_(func.lower(Account.name).like(pattern), func.lower(User.email).like(pattern)))
    if status:
        stmt = stmt.where(Account.status == status)
    if plan:
        stmt = stmt.where(Plan.slug == plan)
    if email:
        stmt = stmt.where(func.lower(User.email) == email.strip().lower())
    rows = session.scalars(stmt.order_by(Account.created_at, Account.id).limit(limit).offset(offset)).all()
    return [account_view(session, a) for a in rows]


def get_account(session: Session, account_id: uuid.UUID, *, lock: bool = False) -> Account:
    stmt = select(Account).where(Account.id == account_id)
    account = session.scalars(stmt.with_for_update() if lock else stmt).first()
    if account is None:
        raise not_found("account")
    return account


def set_account_status(session: Session, account_id: uuid.UUID, status: str, actor: Actor,
                       reason: str = "") -> dict[str, Any]:
    account = get_account(session, account_id, lock=True)
    before = account.status
    if before != status or account.is_active != (status == "active"):
        account.status = status
        account.is_active = status == "active"
        audit(session, actor, "account.suspend" if status == "suspended" else "account.activate", "account",
              account.id, account.id, {"status": [before, status], "reason": reason})
    session.flush()
    return account_view(session, account)


# --- API keys ------------------------------------------------------------------------------------


def key_view(key: APIKey) -> dict[str, Any]:
    return {"id": str(key.id), "account_id": str(key.account_id), "name": key.name,
            "prefix": f"cpk_{key.prefix}", "created_at": rfc3339(key.created_at),
            "last_used_at": rfc3339(key.last_used_at) if key.last_used_at else None,
            "expires_at": rfc3339(key.expires_at) if key.expires_at else None,
            "revoked_at": rfc3339(key.revoked_at) if key.revoked_at else None,
            "active": key.revoked_at is None and (key.expires_at is None or key.expires_at.replace(
                tzinfo=key.expires_at.tzinfo or UTC) > _now())}


def create_key(session: Session, account_id: uuid.UUID, actor: Actor, name: str = "") -> dict[str, Any]:
    account = get_account(session, account_id)
    key, prefix, key_hash = generate_key()
    row = APIKey(id=uuid.uuid4(), account_id=account.id, name=name[:200], prefix=prefix, key_hash=key_hash)
    session.add(row)
    audit(session, actor, "api_key.create", "api_key", row.id, account.id, {"name": name})
    session.flush()
    session.refresh(row)
    return {**key_view(row), "api_key": key}


def list_keys(session: Session, account_id: uuid.UUID) -> list[dict[str, Any]]:
    get_account(session, account_id)
    rows = session.scalars(select(APIKey).where(APIKey.account_id == account_id)
                           .order_by(APIKey.created_at, APIKey.id)).all()
    return [key_view(r) for r in rows]


def revoke_key(session: Session, key_id: uuid.UUID, actor: Actor) -> dict[str, Any]:
    row = session.scalars(select(APIKey).where(APIKey.id == key_id).with_for_update()).first()
    if row is None:
        raise not_found("API key")
    if row.revoked_at is None:
        row.revoked_at = _now()
        audit(session, actor, "api_key.revoke", "api_key", row.id, row.account_id, {})
    session.flush()
    return key_view(row)


# --- credits -------------------------------------------------------------------------------------


def adjust_credits(session: Session, account_id: uuid.UUID, amount: int, reason: str, actor: Actor
                   ) -> dict[str, Any]:
    """Grant (amount > 0) or deduct (amount < 0) general credits; never below zero (409)."""
    get_account(session, account_id)
    row = locked_balance(session, account_id)
    if row.balance + amount < 0:
        raise ApiError(409, "insufficient_credits",
                       f"deducting {-amount} credits would take the balance ({row.balance}) below zero")
    row.balance += amount
    tx = CreditTransaction(id=uuid.uuid4(), account_id=account_id, amount=amount, balance_after=row.balance,
                           transaction_type="adjustment", pools={},
                           description=f"{'grant' if amount > 0 else 'deduction'} by {actor.label}: {reason}")
    session.add(tx)
    audit(session, actor, "credits.grant" if amount > 0 else "credits.deduct", "account", account_id, account_id,
          {"amount": amount, "reason": reason, "balance_after": row.balance, "transaction_id": str(tx.id)})
    session.flush()
    return {"account_id": str(account_id), "amount": amount, "balance": row.balance, "transaction_id": str(tx.id)}


# --- payments ------------------------------------------------------------------------------------


def payment_view(session: Session, payment: Payment) -> dict[str, Any]:
    invoice = session.get(Invoice, payment.invoice_id) if payment.invoice_id else None
    package = session.get(CreditPackage, payment.credit_package_id) if payment.credit_package_id else None
    return {
        "id": str(payment.id), "account_id": str(payment.account_id), "status": payment.status,
        "amount": str(payment.amount), "currency": payment.currency, "reference": payment.reference,
        "credit_package": package.slug if package else None,
        "credits": (package.credits + package.bonus_credits) if package else None,
        "invoice": {"id": str(invoice.id), "number": invoice.number, "status": invoice.status,
                    "amount": str(invoice.amount),
                    "paid_at": rfc3339(invoice.paid_at) if invoice.paid_at else None} if invoice else None,
        "approved_by": payment.approved_by,
        "approved_at": rfc3339(payment.approved_at) if payment.approved_at else None,
        "paid_at": rfc3339(payment.paid_at) if payment.paid_at else None,
        "failure_reason": payment.failure_reason or None,
        "created_at": rfc3339(payment.created_at),
    }


def bank_transfer_method(session: Session) -> PaymentMethodConfig:
    method = session.scalars(select(PaymentMethodConfig).where(PaymentMethodConfig.provider == "bank_transfer",
                                                               PaymentMethodConfig.is_active)).first()
    if method is None:
        raise ApiError(409, "payment_method_unavailable", "bank transfers are not accepted at the moment")
    return method


def create_manual_payment(session: Session, account_id: uuid.UUID, package_slug: str, reference: str
                          ) -> dict[str, Any]:
    method = bank_transfer_method(session)
    package = session.scalars(select(CreditPackage).where(CreditPackage.slug == package_slug,
                                                          CreditPackage.is_active)).first()
    if package is None:
        raise ApiError(404, "not_found", f"credit package {package_slug!r} not found")
    settings = method.settings or {}
    minimum = Decimal(str(settings.get("minimumAmount", 0) or 0))
    if package.price < minimum:
        raise ApiError(422, "validation_error",
                       f"bank transfers start at {minimum} {package.currency}; {package_slug} costs {package.price}")
    currencies = method.currencies or []
    if currencies and package.currency not in currencies:
        raise ApiError(422, "validation_error", f"bank transfers do not accept {package.currency}")
    now = _now()
    number = f"{settings.get('referencePrefix', 'INV-')}{now:%Y%m%d}-{secrets.token_hex(4).upper()}"
    invoice = Invoice(id=uuid.uuid4(), account_id=account_id, number=number, amount=package.price,
                      currency=package.currency, status="open", issued_at=now,
                      due_at=now + timedelta(days=int(settings.get("paymentTermsDays", 14) or 14)),
                      line_items=[{"credit_package": package.slug, "credits": package.credits,
                                   "bonus_credits": package.bonus_credits, "price": str(package.price)}])
    session.add(invoice)
    session.flush()
    payment = Payment(id=uuid.uuid4(), account_id=account_id, invoice_id=invoice.id,
                      payment_method_config_id=method.id, amount=package.price, currency=package.currency,
                      status="pending", credit_package_id=package.id, reference=reference)
    session.add(payment)
    session.flush()
    session.refresh(payment)
    return {**payment_view(session, payment), "instructions": settings.get("instructions", "")}


def list_payments(session: Session, *, status: str | None = None, account_id: uuid.UUID | None = None,
                  limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    stmt = select(Payment)
    if status:
        stmt = stmt.where(Payment.status == status)
    if account_id:
        stmt = stmt.where(Payment.account_id == account_id)
    rows = session.scalars(stmt.order_by(Payment.created_at, Payment.id).limit(limit).offset(offset)).all()
    return [payment_view(session, p) for p in rows]


def _payment(session: Session, payment_id: uuid.UUID) -> Payment:
    payment = session.get(Payment, payment_id, populate_existing=True)
    if payment is None:
        raise not_found("payment")
    return payment


def _render(template: str, values: dict[str, Any]) -> str:
    class Missing(dict):
        def __missing__(self, key):
            return "{" + key + "}"

    try:
        return template.format_map(Missing(values))
    except (ValueError, IndexError):
        return template


def approve_payment(session: Session, payment_id: uuid.UUID, actor: Actor) -> dict[str, Any]:
    now = _now()
    moved = session.execute(
        update(Payment).where(Payment.id == payment_id, Payment.status == "pending")
        .values(status="completed", approved_by=actor.label, approved_at=now, paid_at=now)
        .returning(Payment.id)
    ).first()
    if moved is None:  # not pending (any more): idempotent for an approved one, a conflict otherwise
        payment = _payment(session, payment_id)
        if payment.status == "completed":
            return {**payment_view(session, payment), "replayed": True}
        raise ApiError(409, "conflict", f"payment is {payment.status}; only pending payments can be approved")
    payment = _payment(session, payment_id)
    account = get_account(session, payment.account_id, lock=True)
    package = session.get(CreditPackage, payment.credit_package_id) if payment.credit_package_id else None
    credits = (package.credits + package.bonus_credits) if package else 0

    row = locked_balance(session, account.id)
    row.balance += credits
    session.add(CreditTransaction(
        id=uuid.uuid4(), account_id=account.id, amount=credits, balance_after=row.balance,
        transaction_type="purchase", pools={}, credit_package_id=package.id if package else None,
        idempotency_key=f"payment:{payment.id}",
        description=f"{package.slug if package else 'payment'}: bank transfer {payment.reference} approved by {actor.label}",
    ))
    invoice = session.get(Invoice, payment.invoice_id) if payment.invoice_id else None
    if invoice is not None:
        invoice.status, invoice.paid_at = "paid", now
    activated: list[str] = []
    if account.status != "active" or not account.is_active:
        account.status, account.is_active = "active", True
        activated.append("account")
    subscription = session.scalars(select(Subscription).where(Subscription.account_id == account.id)
                                   .order_by(Subscription.created_at.desc())).first()
    if subscription is not None and subscription.status != "active":
        subscription.status = "active"
        subscription.current_period_start, subscription.current_period_end = now, now + PERIOD
        activated.append("subscription")

    template = session.scalars(select(NotificationConfig).where(NotificationConfig.event == APPROVED_EVENT,
                                                                NotificationConfig.is_active)
                               .order_by(NotificationConfig.id)).first()
    owner = session.get(User, account.owner_id) if account.owner_id else None
    if template is not None:
        values = {"first_name": (owner.first_name if owner and owner.first_name else account.name),
                  "invoice_number": invoice.number if invoice else "", "amount": str(payment.amount),
                  "currency": payment.currency, "credits_added": credits, "account_name": account.name,
                  "product_name": PRODUCT_NAME}
        session.add(NotificationOutbox(
            id=uuid.uuid4(), account_id=account.id, template_id=template.id, event=template.event,
            channel=template.channel, recipient=(owner.email if owner else account.billing_email) or "",
            subject=_render(template.subject, values), body=_render(template.body, values), status="queued"))
    audit(session, actor, "payment.approve", "payment", payment.id, account.id,
          {"status": ["pending", "completed"], "credits_added": credits, "balance_after": row.balance,
           "invoice": invoice.number if invoice else None, "activated": activated})
    session.flush()
    return {**payment_view(session, payment), "credits_added": credits, "activated": activated, "replayed": False}


def reject_payment(session: Session, payment_id: uuid.UUID, reason: str, actor: Actor) -> dict[str, Any]:
    now = _now()
    moved = session.execute(
        update(Payment).where(Payment.id == payment_id, Payment.status == "pending")
        .values(status="failed", failure_reason=reason, approved_by=actor.label, approved_at=now)
        .returning(Payment.id)
    ).first()
    if moved is None:
        payment = _payment(session, payment_id)
        if payment.status == "failed":
            return {**payment_view(session, payment), "replayed": True}
        raise ApiError(409, "conflict", f"payment is {payment.status}; only pending payments can be rejected")
    payment = _payment(session, payment_id)
    invoice = session.get(Invoice, payment.invoice_id) if payment.invoice_id else None
    if invoice is not None and invoice.status == "open":
        invoice.status = "void"
    audit(session, actor, "payment.reject", "payment", payment.id, payment.account_id,
          {"status": ["pending", "failed"], "reason": reason})
    session.flush()
    return {**payment_view(session, payment), "replayed": False}


def audit_entries(session: Session, *, account_id: uuid.UUID | None = None, limit: int = 100
                  ) -> list[dict[str, Any]]:
    stmt = select(AuditLog)
    if account_id:
        stmt = stmt.where(AuditLog.account_id == account_id)
    rows = session.scalars(stmt.order_by(AuditLog.created_at, AuditLog.id).limit(limit)).all()
    return [{"id": str(r.id), "action": r.action, "object_type": r.object_type, "object_id": r.object_id,
             "account_id": str(r.account_id) if r.account_id else None,
             "operator_id": str(r.operator_id) if r.operator_id else None,
             "actor": (r.changes or {}).get("actor"), "changes": r.changes, "created_at": rfc3339(r.created_at)}
            for r in rows]


def notifications(session: Session, account_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = session.scalars(select(NotificationOutbox).where(NotificationOutbox.account_id == account_id)
                           .order_by(NotificationOutbox.created_at, NotificationOutbox.id)).all()
    return [{"id": str(r.id), "event": r.event, "channel": r.channel, "recipient": r.recipient,
             "subject": r.subject, "body": r.body, "status": r.status, "created_at": rfc3339(r.created_at)}
            for r in rows]
