"""The operator API (`/v1/admin`): staff keys from `cplane operators create`, roles per route.

Roles: `admin` everything; `finance` credits and payments; `support` accounts (search, suspend,
activate) and reading payments. Another role answers 403 `forbidden_role`.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from runtime import staff
from runtime.auth import Staff, require_role
from runtime.errors import responses

router = APIRouter(prefix="/v1/admin", tags=["admin"])

ADMIN_ERRORS = responses(401, 403, 404, 409, 413, 422, 500, 503)
ANY_ROLE = require_role("admin", "finance", "support")
ACCOUNTS = require_role("admin", "support")
MONEY = require_role("admin", "finance")

AccountId = Path(..., description="The account's id.")
PaymentId = Path(..., description="The payment's id.")


def actor(op: Staff) -> staff.Actor:
    return staff.Actor(label=f"operator:{op.name}", operator_id=op.operator_id)


class Items(BaseModel):
    items: list[dict[str, Any]]


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=2000)


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(..., min_length=1, max_length=2000)


class CreditsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: int = Field(..., ge=-1_000_000_000, le=1_000_000_000,
                        description="Positive grants, negative deducts (never below zero).")
    reason: str = Field(..., min_length=1, max_length=2000)


@router.get("/accounts", response_model=Items, responses=ADMIN_ERRORS, operation_id="adminListAccounts",
            summary="Search accounts by name or owner e-mail, status and plan")
def list_accounts(q: str | None = Query(None, max_length=200, description="Substring of name or owner e-mail."),
                  status: Literal["active", "suspended", "cancelled"] | None = None,
                  plan: str | None = Query(None, max_length=100), email: str | None = Query(None, max_length=254),
                  limit: int = Query(50, ge=1, le=200), offset: int = Query(0, ge=0),
                  op: Staff = Depends(ANY_ROLE)):
    return {"items": staff.list_accounts(op.session, search=q, status=status, plan=plan, email=email,
                                         limit=limit, offset=offset)}


@router.get("/accounts/{account_id}", responses=ADMIN_ERRORS, operation_id="adminGetAccount",
            summary="One account")
def get_account(account_id: uuid.UUID = AccountId, op: Staff = Depends(ANY_ROLE)) -> dict[str, Any]:
    return staff.account_view(op.session, staff.get_account(op.session, account_id))


@router.post("/accounts/{account_id}/suspend", responses=ADMIN_ERRORS, operation_id="adminSuspendAccount",
             summary="Suspend: the account's tenant routes answer 403 account_suspended")
def suspend(body: ReasonIn | None = None, account_id: uuid.UUID = AccountId,
            op: Staff = Depends(ACCOUNTS)) -> dict[str, Any]:
    with op.session.begin():
        return staff.set_account_status(op.session, account_id, "suspended", actor(op), body.reason if body else "")


@router.post("/accounts/{account_id}/activate", responses=ADMIN_ERRORS, operation_id="adminActivateAccount",
             summary="Reactivate a suspended account")
def activate(body: ReasonIn | None = None, account_id: uuid.UUID = AccountId,
             op: Staff = Depends(ACCOUNTS)) -> dict[str, Any]:
    with op.session.begin():
        return staff.set_account_status(op.session, account_id, "active", actor(op), body.reason if body else "")


@router.post("/accounts/{account_id}/credits", responses=ADMIN_ERRORS, operation_id="adminAdjustCredits",
             summary="Grant or deduct general credits with a reason (never below zero: 409)")
def adjust_credits(body: CreditsIn, account_id: uuid.UUID = AccountId, op: Staff = Depends(MONEY)) -> dict[str, Any]:
    with op.session.begin():
        return staff.adjust_credits(op.session, account_id, body.amount, body.reason, actor(op))


@router.get("/accounts/{account_id}/notifications", response_model=Items, responses=ADMIN_ERRORS,
            operation_id="adminListNotifications", summary="Notifications queued for the account")
def list_notifications(account_id: uuid.UUID = AccountId, op: Staff = Depends(ANY_ROLE)):
    return {"items": staff.notifications(op.session, account_id)}


@router.get("/payments", response_model=Items, responses=ADMIN_ERRORS, operation_id="adminListPayments",
            summary="Payments, by status")
def list_payments(status: Literal["pending", "completed", "failed"] | None = None,
                  account_id: uuid.UUID | None = None, limit: int = Query(50, ge=1, le=200),
                  offset: int = Query(0, ge=0), op: Staff = Depends(ANY_ROLE)):
    return {"items": staff.list_payments(op.session, status=status, account_id=account_id, limit=limit,
                                         offset=offset)}


@router.post("/payments/{payment_id}/approve", responses=ADMIN_ERRORS, operation_id="adminApprovePayment",
             summary="Approve a pending manual payment: credits, ledger, invoice paid, activation, notification")
def approve(payment_id: uuid.UUID = PaymentId, op: Staff = Depends(MONEY)) -> dict[str, Any]:
    with op.session.begin():
        return staff.approve_payment(op.session, payment_id, actor(op))


@router.post("/payments/{payment_id}/reject", responses=ADMIN_ERRORS, operation_id="adminRejectPayment",
             summary="Reject a pending manual payment with a reason (no credits)")
def reject(body: RejectIn, payment_id: uuid.UUID = PaymentId, op: Staff = Depends(MONEY)) -> dict[str, Any]:
    with op.session.begin():
        return staff.reject_payment(op.session, payment_id, body.reason, actor(op))


@router.get("/audit", response_model=Items, responses=ADMIN_ERRORS, operation_id="adminListAudit",
            summary="Audit trail of staff actions (who, when, what)")
def list_audit(account_id: uuid.UUID | None = None, limit: int = Query(100, ge=1, le=500),
               op: Staff = Depends(ANY_ROLE)):
    return {"items": staff.audit_entries(op.session, account_id=account_id, limit=limit)}
