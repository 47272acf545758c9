"""The clock of the desired state, and the desired state at a time.

One injectable clock: an explicit time (`cplane plan --at`, a parameter in-process) wins, then
`CPLANE_NOW` (RFC 3339 with a zone: how tests set the time of the processes they start), then the
system clock. The time logic itself (windows, schedules, the config at a time) is
config.schedule's.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from control_plane.config.model import ConfigSet
from control_plane.config.schedule import TimeError, at_time, format_time, next_point, parse_time
from control_plane.errors import CplaneError

__all__ = ["at_time", "config_now", "format_time", "next_point", "now", "parse_time"]

CLOCK_VARIABLE = "CPLANE_NOW"


def now(at: datetime | str | None = None, environ=None) -> datetime:
    """The time the desired state is computed for (aware, UTC)."""
    environ = os.environ if environ is None else environ
    value = at if at is not None else environ.get(CLOCK_VARIABLE) or None
    if value is None:
        return datetime.now(UTC)
    try:
        return parse_time(value)
    except TimeError as exc:
        source = "--at" if at is not None else CLOCK_VARIABLE
        raise CplaneError(f"{source}: {exc}", code="usage_error") from None


def config_now(config: ConfigSet, t: datetime) -> ConfigSet:
    """The validated config as it is at `t` (itself when nothing in it depends on time)."""
    return at_time(config, t)
