"""Plans as plain data: what would change, row by row, and nothing about how it was computed.

compare (plans.compare) makes a Plan; render shows it, planfile saves and reads it, apply executes
it. A Plan holds everything apply needs: the values to write (secrets only by reference), the
fingerprint of every live row it was computed from (so that a saved plan applied later can detect
that the database moved) and of every row state it leaves behind; and what it is bound to: the
database it was computed against (its lineage id), the environment and the config.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# 2: plans carry a digest of their content and the database, environment and cplane they belong to.
FORMAT_VERSION = 2


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    RETIRE = "retire"
    # A config object whose natural key matches a row cplane did not create: taking it under
    # management (with the field differences it makes). Apply refuses it without --adopt.
    ADOPT = "adopt"


# What plan summaries count: an adoption is an update of the row.
SUMMARY_ACTIONS = (Action.CREATE, Action.UPDATE, Action.DELETE, Action.RETIRE)
# Actions that write a row's values.
WRITES = frozenset({Action.CREATE, Action.UPDATE, Action.ADOPT})


class _Frozen:
    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("an empty shared by many changes: assign a new container instead of changing it")


class EmptyDict(_Frozen, dict):
    """The empty mapping compare gives every create that has no impact or secret references: a
    dict to every reader (equality, JSON, copies), one object for all of them instead of one
    empty dict each (at 100,000 creates, 13 MB); changing it in place is refused."""

    __slots__ = ()
    __setitem__ = __delitem__ = update = setdefault = pop = popitem = clear = __ior__ = _Frozen._refuse


class EmptyList(_Frozen, list):
    """As EmptyDict, for the field changes of a create that sets no secret."""

    __slots__ = ()
    __setitem__ = __delitem__ = append = extend = insert = pop = remove = clear = sort = reverse = \
        __iadd__ = __imul__ = _Frozen._refuse


NO_FIELDS: list = EmptyList()
NOTHING: dict = EmptyDict()


# Changes and their fields are slotted: a first apply's plan holds 100,000 creates, and an instance
# without a __dict__ is ~50 bytes smaller (5 MB of the plan's ~50 MB there; the rest is each change's
# own containers and values). Plain data still: the same fields, equality and dataclasses.replace;
# the saved plan's JSON is unchanged.
@dataclass(slots=True)
class FieldChange:
    field: str
    before: Any
    after: Any


@dataclass(slots=True)
class Change:
    kind: str
    name: str
    action: Action
    cause: str = "config"  # config | drift | adopt
    fields: list[FieldChange] = field(default_factory=list)
    # create/update/adopt: every managed column (references by natural key, secrets absent).
    values: dict[str, Any] = field(default_factory=dict)
    secret_refs: dict[str, Any] = field(default_factory=dict)
    live_fingerprint: str | None = None
    # The row as the change leaves it (for a retire: the live row, retired); None for a delete.
    desired_fingerprint: str | None = None
    prevent_destroy: bool = False
    impact: dict[str, int] = field(default_factory=dict)
    reason: str = ""
    # Change rules of Policy documents this change breaks: {"policy", "severity", "message"}.
    policy_violations: list[dict[str, str]] = field(default_factory=list)


@dataclass
class ScheduledStep:
    """Changes the config schedules for a later time (docs/reference.md §4, Scheduled): at `at`
    (RFC 3339, UTC), from the schedule entries and windows named in `entries`, relative to the
    desired state just before. Not applied by the plan that shows them."""

    at: str
    entries: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)


@dataclass
class Plan:
    format_version: int = FORMAT_VERSION
    created_at: str = ""
    environment: str | None = None
    config_revision: str = ""
    config_digest: str = ""
    # SHA-256 over the Policy documents the plan was checked against ("" when there were none).
    policies_digest: str = ""
    cplane_version: str = ""
    # The database planned against: {"dialect", "lineage", "environment"} (lineage None: not
    # migrated by cplane yet; environment: the one its first apply recorded).
    database: dict[str, Any] = field(default_factory=dict)
    # "recorded -> environment" when the plan was made with --allow-environment-change for another
    # environment than the database's.
    environment_change: str = ""
    # Made with --adopt: its adopt changes are approved.
    adopt: bool = False
    changes: list[Change] = field(default_factory=list)
    unmanaged: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Migrations the database was behind head when planned (apply runs them before the changes).
    pending_migrations: int = 0
    # The time the desired state was computed for (RFC 3339, UTC) and the next time it changes
    # (a scheduled change falls due, a window opens or closes): a plan applied at or after
    # `valid_until` is stale. Empty: the config has no schedule.
    at: str = ""
    valid_until: str = ""
    # Future changes, in time order (not applied by this plan).
    scheduled: list[ScheduledStep] = field(default_factory=list)
    # Schedule entries (and windows) due by `at` whose changes this plan applies: what the audit
    # names ({"at", "entries", "changes": ["Kind/name field", ...]}).
    schedule_applied: list[dict[str, Any]] = field(default_factory=list)
    # The upcoming changes the database announces (cplane_scheduled_changes, the catalog's
    # `upcoming`) differ from `scheduled`: apply publishes them (a change even with no row changes).
    publish_schedule: bool = False
    # A rollback plan: the apply run whose desired rows it restores.
    rollback_to: int | None = None
    # What applying this plan records for the no-change fast path (reconcile/fastpath.Recorder.draft:
    # the digests of the desired state it was made from and the tables' versions it read), when it
    # was made for saving; its apply writes the record only if those versions still hold.
    record: dict[str, Any] | None = None

    @property
    def schema_note(self) -> str:
        return f"Schema: {self.pending_migrations} migrations pending (apply runs them first)" if self.pending_migrations else ""

    @property
    def summary(self) -> dict[str, int]:
        counts = Counter([c.action for c in self.changes])  # (an adoption counts as an update)
        adopted = counts.pop(Action.ADOPT, 0)
        if adopted:
            counts[Action.UPDATE] += adopted
        return {str(action): counts.get(action, 0) for action in SUMMARY_ACTIONS}

    @property
    def has_changes(self) -> bool:
        return bool(self.changes) or self.publish_schedule

    @property
    def adoptions(self) -> list[Change]:
        return [c for c in self.changes if c.action == Action.ADOPT]
