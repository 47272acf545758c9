"""Timestamps as the API writes them: RFC 3339, UTC, with `Z`, on every backend.

SQLite hands back naive datetimes (stored in UTC), PostgreSQL aware ones in the session's time
zone; both are rendered the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import PlainSerializer


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    """`2026-12-01T06:46:41.706909Z` (microseconds only when there are any)."""
    text = utc(value).replace(tzinfo=None).isoformat()
    return f"{text}Z"


Timestamp = Annotated[datetime, PlainSerializer(rfc3339, return_type=str, when_used="json")]
