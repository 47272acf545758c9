"""Who runs cplane and where: the production guards and the actor recorded in audit rows."""

from __future__ import annotations

import getpass
import os

PRODUCTION_NAMES = ("production", "prod")


def is_production(environment: str | None) -> bool:
    return (environment or "").lower() in PRODUCTION_NAMES


def default_actor() -> str:
    """$CPLANE_ACTOR (CI sets it to the pipeline's user), else the login name."""
    try:
        return os.environ.get("CPLANE_ACTOR") or getpass.getuser()
    except Exception:  # no passwd entry and no login variables (containers)
        return "unknown"
