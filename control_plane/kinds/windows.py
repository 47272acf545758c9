"""The `SyncWindow` kind's spec: when `cplane watch` may apply automatically (docs/operations.md).

A window is either weekly (`start: "Fri 16:00"`, `end: "Mon 08:00"` in `timeZone`) or one span
(`from` / `until`, RFC 3339 with a zone: a launch freeze). `deny` windows block automatic applies
(and manual ones without --override-window) while they are open; when any `allow` window exists,
automatic applies happen only while one is open. The kind has no rows: nothing is written for it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from control_plane.kinds.specs import Strict

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKLY = re.compile(r"^\s*(mon|tue|wed|thu|fri|sat|sun)[a-z]*\s+([01]?\d|2[0-3]):([0-5]\d)\s*$", re.IGNORECASE)


def parse_weekly(text: str) -> tuple[int, int, int]:
    """(weekday 0=Monday, hour, minute) of `Fri 16:00`; ValueError otherwise."""
    match = WEEKLY.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a weekly time like 'Fri 16:00'")
    return DAYS.index(match.group(1).lower()[:3]), int(match.group(2)), int(match.group(3))


def parse_instant(text: str) -> datetime:
    """An RFC 3339 time with a zone; ValueError otherwise."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no zone (write Z or an offset such as +01:00)")
    return value


class SyncWindowSpec(Strict):
    action: Literal["deny", "allow"]
    time_zone: str = "UTC"
    # Weekly: from `start` to `end` every week (`end` before `start` wraps over the week's end).
    start: str | None = None
    end: str | None = None
    # One span: from `from_` until `until` (RFC 3339 with a zone).
    from_: str | None = Field(default=None, alias="from")
    until: str | None = None
    # The environments the window applies to; empty: every environment.
    environments: list[str] = []
    description: str = ""

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError("time_zone", "'{value}' is not a time zone (like Europe/Berlin)",
                                      {"value": value}) from None
        return value

    @field_validator("start", "end")
    @classmethod
    def _weekly(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_weekly(value)
            except ValueError as exc:
                raise PydanticCustomError("weekly_time", str(exc)) from None
        return value

    @field_validator("from_", "until")
    @classmethod
    def _instant(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_instant(value)
            except ValueError as exc:
                raise PydanticCustomError("instant", "{error}", {"error": str(exc)}) from None
        return value

    @model_validator(mode="after")
    def _one_form(self):
        weekly = self.start is not None or self.end is not None
        span = self.from_ is not None or self.until is not None
        if weekly == span:
            raise PydanticCustomError("window_form", "a window is either weekly (start and end, like 'Fri 16:00') "
                                      "or one span (from and until, RFC 3339)")
        if weekly and (self.start is None or self.end is None):
            raise PydanticCustomError("window_form", "a weekly window needs both start and end")
        if span and (self.from_ is None or self.until is None):
            raise PydanticCustomError("window_form", "a span needs both from and until")
        if span and parse_instant(self.until) <= parse_instant(self.from_):
            raise PydanticCustomError("window_form", "until must be after from")
        return self
