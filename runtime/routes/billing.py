"""Tenant billing: manual payments (bank transfer) and their state."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from control_plane.db.models import Payment
from runtime import staff
from runtime.auth import Tenant, tenant_dep
from runtime.errors import TENANT, not_found

router = APIRouter(prefix="/v1/billing", tags=["billing"])


class ManualPaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    credit_package: str = Field(..., min_length=1, max_length=100, description="A credit package's `name`.")
    reference: str = Field("", max_length=255, description="The bank transfer's reference, if already known.")


class PaymentList(BaseModel):
    items: list[dict[str, Any]]
    next: str | None = None


@router.post("/manual-payments", status_code=201, responses=TENANT, operation_id="createManualPayment",
             summary="Buy a credit package by bank transfer: an invoice and a pending payment")
def create_manual_payment(body: ManualPaymentIn, tenant: Tenant = Depends(tenant_dep)) -> dict[str, Any]:
    session = tenant.session
    session.rollback()
    with session.begin():
        return staff.create_manual_payment(session, tenant.account_id, body.credit_package, body.reference)


@router.get("/payments", response_model=PaymentList, responses=TENANT, operation_id="listPayments",
            summary="The account's payments with their invoices")
def list_payments(tenant: Tenant = Depends(tenant_dep)):
    return {"items": staff.list_payments(tenant.session, account_id=tenant.account_id, limit=200), "next": None}


@router.get("/payments/{object_id}", responses=TENANT, operation_id="getPayment", summary="One payment")
def get_payment(object_id: uuid.UUID = Path(..., description="The payment's id."),
                tenant: Tenant = Depends(tenant_dep)) -> dict[str, Any]:
    payment = tenant.session.scalars(
        select(Payment).where(Payment.id == object_id, Payment.account_id == tenant.account_id)
    ).first()
    if payment is None:
        raise not_found("payment")
    return staff.payment_view(tenant.session, payment)
