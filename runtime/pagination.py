"""Keyset pagination on (created_at, id) with an opaque cursor."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, create_model
from sqlalchemy import Select, tuple_
from sqlalchemy.orm import Session

from runtime.errors import ApiError

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def encode_cursor(created_at: datetime, row_id: Any) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, id_type: type = uuid.UUID) -> tuple[datetime, Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, row_id = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        return datetime.fromisoformat(created), id_type(row_id)
    except (ValueError, TypeError, UnicodeError):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned") from None


def page(session: Session, stmt: Select, model: Any, limit: int, cursor: str | None) -> tuple[list[Any], str | None]:
    """Rows of `stmt` (selecting `model`) after `cursor`, oldest first, and the cursor of the next page."""
    id_type = int if model.__table__.c.id.type.python_type is int else uuid.UUID
    if cursor:
        created, row_id = decode_cursor(cursor, id_type)
        stmt = stmt.where(tuple_(model.created_at, model.id) > tuple_(created, row_id))
    rows = list(session.scalars(stmt.order_by(model.created_at, model.id).limit(limit + 1)))
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        return rows, encode_cursor(last.created_at, last.id)
    return rows, None


def list_model(name: str, item: type[BaseModel]) -> type[BaseModel]:
    """The envelope of every list response: `items` and the `next` cursor (null on the last page)."""
    return create_model(name, items=(list[item], ...), next=(str | None, None))
