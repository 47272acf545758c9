"""`cplane watch`: plan every interval and act by policy (docs/operations.md, reference §7).

- detect (default): report drift and pending changes; write nothing.
- self-heal: apply the plan's drift changes only (rows edited outside cplane), never config changes.
- auto-apply: apply config changes (and scheduled changes once due); deletions and retirements only
  with prune, else they stay pending. Adopt changes are never applied by the loop.

Every apply is `apply_plan` of a plan restricted to those changes: one transaction under the apply
lock, re-checking each row's fingerprint, audited with the loop as actor. One watcher per database
holds a session advisory lock for its whole life; SIGTERM ends the loop between rounds.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, inspect, select

from control_plane.apply.execute import PlanStale
from control_plane.errors import CplaneError, LockHeld
from control_plane.plans.model import Action, Change, Plan
from control_plane.watch import hooks
from control_plane.watch.metrics import WatchMetrics
from control_plane.watch.notify import Event, Notifier
from control_plane.watch.windows import WindowState, declared_windows, evaluate, windows_of

log = logging.getLogger("cplane.watch")

WATCH_LOCK_ID = 0x63706C616E66  # one more than the apply lock: "cplanf"
DEFAULT_ACTOR = "cplane-watch"
HISTORY_KEPT = 50


class WatcherRunning(LockHeld):
    pass


@dataclass
class Policy:
    self_heal: bool = False
    auto_apply: bool = False
    prune: bool = False

    @property
    def mode(self) -> str:
        parts = (["self-heal"] if self.self_heal else []) + (["auto-apply"] if self.auto_apply else [])
        return "+".join(parts) + ("+prune" if self.prune and self.auto_apply else "") if parts else "detect"

    def wants(self, change: Change, nature: str | None = None) -> bool:
        """Whether the loop applies this change by itself. `nature` (see `nature_of`): `drift` (the
        row moved outside cplane, the config did not), `drift+config` (both moved: applied only with
        self-heal and auto-apply, since writing the config over a manual edit is both), `config`,
        `adopt` (never)."""
        nature = nature or ("adopt" if change.action == Action.ADOPT else change.cause)
        if nature == "adopt":
            return False
        if nature == "drift":
            return self.self_heal
        if nature == "drift+config":
            return self.self_heal and self.auto_apply
        if not self.auto_apply:
            return False
        return self.prune or change.action not in (Action.DELETE, Action.RETIRE)


def nature_of(change: Change, recorded: dict[tuple[str, str], str]) -> str:
    """What a change heals or brings, from the fingerprint cplane recorded when it last wrote the row
    (`recorded`): drift when the config still wants exactly that row (an update of a row edited
    outside cplane, or a create of a managed row deleted outside it)."""
    if change.action == Action.ADOPT or change.cause == "adopt":
        return "adopt"
    last = recorded.get((change.kind, change.name))
    unchanged_config = last is not None and change.desired_fingerprint == last
    if change.cause == "drift":
        return "drift" if unchanged_config else "drift+config"
    if change.action == Action.CREATE and unchanged_config:
        return "drift"
    return "config"


@dataclass
class RoundResult:
    """What one round saw and did; the status page and /metrics read the latest."""

    started_at: datetime
    finished_at: datetime | None = None
    ok: bool = True
    error: str = ""
    error_type: str = ""
    plan: Plan | None = None
    revision: str = ""
    window: WindowState = field(default_factory=lambda: WindowState(False))
    applied_run_id: int | None = None
    applied: int = 0
    held: list[Change] = field(default_factory=list)  # changes the policy would apply but a window/hold stopped
    hold_reason: str = ""
    scheduled: list[hooks.ScheduledChange] = field(default_factory=list)
    managed: dict[str, int] = field(default_factory=dict)
    natures: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, name) -> nature_of
    git_error: str = ""
    schema_revision: str | None = None

    def is_drift(self, change: Change) -> bool:
        return self.natures.get((change.kind, change.name), change.cause).startswith("drift")

    @property
    def drift(self) -> list[Change]:
        return [c for c in self.plan.changes if self.is_drift(c)] if self.plan else []

    def kind_states(self, policy: Policy) -> dict[str, str]:
        """Sync state per kind: in sync, drift, pending, scheduled, blocked."""
        states: dict[str, str] = {}
        held = {(c.kind, c.name) for c in self.held}
        for kind in sorted(set(self.managed) | {c.kind for c in (self.plan.changes if self.plan else [])}):
            changes = [c for c in self.plan.changes if c.kind == kind] if self.plan else []
            if any((c.kind, c.name) in held for c in changes) and self.window.blocked:
                states[kind] = "blocked"
            elif any(self.is_drift(c) for c in changes):
                states[kind] = "drift"
            elif changes:
                states[kind] = "pending"
            elif any(s.kind == kind for s in self.scheduled):
                states[kind] = "scheduled"
            else:
                states[kind] = "in sync"
        return states


class Watcher:
    def __init__(self, engine: Engine, config_dir: Path, *, environment: str | None, policy: Policy,
                 interval: float = 30.0, actor: str = DEFAULT_ACTOR, git=None,
                 notifier: Notifier | None = None, metrics: WatchMetrics | None = None, say=None):
        self.engine = engine
        self.config_dir = Path(config_dir)
        self.environment = environment
        self.policy = policy
        self.interval = interval
        self.actor = actor
        self.git = git
        self.notifier = notifier or Notifier([])
        self.metrics = metrics or WatchMetrics()
        self.say = say or (lambda line: log.info(line))
        self.stop = threading.Event()
        self.rounds = 0
        self.last: RoundResult | None = None
        self.last_good_revision = ""
        self._lock = threading.Lock()
        self._drift_seen: frozenset = frozenset()
        self._blocked_seen: str = ""
        self._last_failure = ""
        self._last_apply_failure = ""
        self._natures: dict[tuple[str, str], str] = {}

    # -- the loop ---------------------------------------------------------------------------------

    def run(self, max_rounds: int | None = None) -> None:
        """Round after round until `stop` is set (SIGTERM) or `max_rounds`. The caller holds the lock."""
        while not self.stop.is_set():
            started = time.monotonic()
            self.round()
            if max_rounds is not None and self.rounds >= max_rounds:
                break
            self.stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def round(self) -> RoundResult:
        from control_plane.reconcile.controller import apply_plan, make_plan

        result = RoundResult(started_at=datetime.now(UTC))
        t0 = time.monotonic()
        try:
            if self.git is not None:
                self._update_git(result)
            planned = make_plan(self.engine, self.config_dir, environment=self.environment)
            plan = planned.plan
            result.plan = plan
            result.revision = plan.config_revision
            result.scheduled = hooks.scheduled_changes(plan)
            # A plan from the no-change fast path parsed nothing: read the windows on their own.
            windows = (windows_of(planned.config, self.environment) if planned.config is not None
                       else declared_windows(self.config_dir, self.environment))
            result.window = evaluate(windows)
            recorded = self._read_database(result)
            if plan.errors:
                raise CplaneError("; ".join(plan.errors))
            result.natures = {(c.kind, c.name): nature_of(c, recorded) for c in plan.changes}
            self._natures = result.natures
            self._see_drift(result)
            wanted = [c for c in plan.changes if self.policy.wants(c, result.natures[(c.kind, c.name)])]
            hold = None
            if wanted and any(result.natures[(c.kind, c.name)] != "drift" for c in wanted):
                with self.engine.connect() as conn:
                    hold = hooks.rollback_hold(conn, plan.config_digest)
                if hold:  # never auto-apply over a rollback; healing drift stays allowed
                    result.held = [c for c in wanted if result.natures[(c.kind, c.name)] != "drift"]
                    result.hold_reason = hold
                    wanted = [c for c in wanted if result.natures[(c.kind, c.name)] == "drift"]
            if wanted and result.window.blocked:
                result.held = wanted
                result.hold_reason = result.window.reason
                wanted = []
            if wanted:
                sub = replace(plan, changes=wanted,
                              warnings=[*plan.warnings, f"applied by cplane watch ({self.policy.mode}): "
                                        f"{len(wanted)} of {len(plan.changes)} planned change(s)"])
                a0 = time.monotonic()
                try:
                    applied = apply_plan(self.engine, sub, environment=self.environment, actor=self.actor)
                except (LockHeld, PlanStale) as exc:
                    # Another apply holds the lock, or a row moved since the plan: the next round
                    # plans again. Not a failure to page anyone about.
                    self.metrics.apply_duration.observe(time.monotonic() - a0)
                    raise _Failed("busy" if isinstance(exc, LockHeld) else "stale", exc) from exc
                except Exception as exc:
                    self.metrics.apply_duration.observe(time.monotonic() - a0)
                    if _line(exc) != self._last_apply_failure:  # once per distinct failure, not every round
                        self._notify("apply_failed", f"apply failed: {_line(exc)}", plan, wanted)
                    self._last_apply_failure = _line(exc)
                    raise _Failed("apply", exc) from exc
                self._last_apply_failure = ""
                self.metrics.apply_duration.observe(time.monotonic() - a0)
                self.metrics.last_apply.set(time.time())
                result.applied_run_id = applied.apply_run_id
                result.applied = len(wanted)
                self.say(f"watch: applied {len(wanted)} change(s) as run #{applied.apply_run_id} "
                         f"(config {plan.config_revision or 'unknown'})")
                self._notify("apply_succeeded", f"applied {len(wanted)} change(s) as run #{applied.apply_run_id}",
                             plan, wanted, summary=sub.summary)
                # What remains is what this round leaves pending: the plan without what was applied.
                done = {(c.kind, c.name) for c in wanted}
                result.plan = replace(plan, changes=[c for c in plan.changes if (c.kind, c.name) not in done])
            self._report(result)
        except Exception as exc:  # a round never kills the loop
            kind, cause = (exc.kind, exc.cause) if isinstance(exc, _Failed) else (_error_type(exc), exc)
            result.ok = False
            result.error = _line(cause)
            result.error_type = kind
            self.metrics.errors.labels(type=kind).inc()
            if result.error != self._last_failure:
                self.say(f"watch: round failed ({kind}): {result.error}")
            self._last_failure = result.error
        else:
            self._last_failure = ""
            self.metrics.last_reconcile.set(time.time())
        finally:
            self.metrics.reconcile_duration.observe(time.monotonic() - t0)
            result.finished_at = datetime.now(UTC)
            with self._lock:
                self.last = result
                self.rounds += 1
        return result

    # -- parts of a round -------------------------------------------------------------------------

    def _update_git(self, result: RoundResult) -> None:
        from control_plane.watch.gitsource import GitError

        try:
            before, after = self.git.update()
            self.last_good_revision = after
            if before != after:
                self.say(f"watch: config source fast-forwarded {before[:12]} -> {after[:12]}")
        except GitError as exc:
            result.git_error = str(exc)
            self.metrics.errors.labels(type="git").inc()
            self.say(f"watch: {exc}; keeping revision {self.git.revision()[:12]}")

    def _read_database(self, result: RoundResult) -> dict[tuple[str, str], str]:
        """Schema revision and managed rows per kind into `result`; returns the fingerprint cplane
        recorded for each managed row."""
        from control_plane.db.engine import current_revision
        from control_plane.db.models import ManagedObject

        result.schema_revision = current_revision(self.engine)
        recorded: dict[tuple[str, str], str] = {}
        with self.engine.connect() as conn:
            if inspect(conn).has_table(ManagedObject.__tablename__):
                t = ManagedObject.__table__
                for kind, name, fp in conn.execute(select(t.c.kind, t.c.name, t.c.fingerprint)):
                    recorded[(kind, name)] = fp
                    result.managed[kind] = result.managed.get(kind, 0) + 1
        return recorded

    def _see_drift(self, result: RoundResult) -> None:
        """Say and notify drift once per new set of drifted rows (not every round)."""
        plan = result.plan
        drifted = result.drift
        seen = frozenset((c.kind, c.name, c.live_fingerprint) for c in drifted)
        if seen and seen != self._drift_seen:
            names = ", ".join(f"{c.kind}/{c.name}" for c in drifted)
            self.say(f"watch: drift detected: {names}")
            self._notify("drift_detected", f"drift detected in {len(seen)} object(s): {names[:500]}", plan, drifted)
        self._drift_seen = seen

    def _report(self, result: RoundResult) -> None:
        from control_plane.kinds.registry import ROW_KINDS

        plan = result.plan
        m = self.metrics
        drift: dict[str, int] = {}
        for c in result.drift:
            drift[c.kind] = drift.get(c.kind, 0) + 1
        kinds = sorted(set(ROW_KINDS) | set(result.managed) | set(drift))
        m.set_per_kind(m.managed, result.managed, kinds)
        m.set_per_kind(m.drift, drift, kinds)
        m.pending.set(len(plan.changes))
        m.scheduled.set(len(result.scheduled))
        m.next_scheduled.set(result.scheduled[0].at.timestamp() if result.scheduled else 0)
        m.window_blocked.set(1 if result.window.blocked else 0)
        if result.held and result.hold_reason != self._blocked_seen:
            self.say(f"watch: {len(result.held)} change(s) not applied: {result.hold_reason}")
            self._notify("window_blocked", f"{len(result.held)} change(s) wait: {result.hold_reason}", plan, result.held)
        self._blocked_seen = result.hold_reason if result.held else ""

    def _notify(self, event: str, message: str, plan: Plan, changes: list[Change], summary=None) -> None:
        from control_plane.db.engine import redact

        self.notifier.notify(Event(
            event, message, environment=self.environment, database=redact(self.engine.url),
            config_revision=plan.config_revision,
            objects=[{"kind": c.kind, "name": c.name, "action": str(c.action), "cause": self._natures.get((c.kind, c.name), c.cause)} for c in changes],
            summary=summary or {}))

    def snapshot(self) -> RoundResult | None:
        with self._lock:
            return self.last


class _Failed(Exception):
    def __init__(self, kind: str, cause: Exception):
        super().__init__(str(cause))
        self.kind = kind
        self.cause = cause


def _line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:1000] or type(exc).__name__


def _error_type(exc: Exception) -> str:
    from sqlalchemy.exc import DBAPIError, OperationalError

    from control_plane.errors import ConfigInvalid

    if isinstance(exc, ConfigInvalid):
        return "config"
    if isinstance(exc, OperationalError | DBAPIError):
        return "database"
    if isinstance(exc, CplaneError):
        return getattr(exc, "code", "error") or "error"
    return "internal"


def acquire(engine: Engine, timeout: float = 0, on_wait=None):
    """The one-watcher-per-database lock, held until the context exits (PostgreSQL: a session
    advisory lock the server drops if the process dies; SQLite: a lock file beside the database)."""
    from control_plane.db.dialect import for_dialect

    message = "another cplane watch is already running against this database (watch lock held)"
    if timeout > 0:
        message += f" (waited {timeout:g}s, --lock-timeout)"
    return for_dialect(engine).session_lock(engine, WATCH_LOCK_ID, "watch", WatcherRunning(message),
                                            timeout=timeout, on_wait=on_wait)
